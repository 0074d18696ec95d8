// hattn_scaling: time and peak memory of one training step for a given sequence length.
//
//   hattn_scaling --width tiny|medium --tokens T [--batch B] [--steps N] [--checkpoint]
//   hattn_scaling_variants --variant replace|residual|pooled|dense --levels L --tokens T [...]
//
// hattn_scaling_variants is this file compiled with HATTN_SCALING_VARIANTS: the tiny width with
// every variant of the tool (cli/presets.hpp, dense3 aside) at levels 3 to 9, 22 model types, so
// it is built only on request (`ninja -C build hattn_scaling_variants`; benchmarks/variants.py
// does), not with the rest.
//
// Builds a Decoder of the chosen width with sequence_length = T, runs one untimed warm-up training
// step (zero_grad, forward with dropout, backward, AdamW step; the warm-up sizes the workspace and
// touches every page), then N timed steps, and prints one JSON line. seconds_per_step is the
// fastest of the timed steps (other processes only ever slow a step down; step_seconds lists them
// all). peak_rss_mib is this process's peak resident set size (getrusage), so measure each T in
// its own process, launched from a small one: Linux carries the parent's RSS at fork/exec into
// ru_maxrss. benchmarks/scaling.py sweeps T and plots the result.

#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <hattn/hattn.hpp>

#include "bench_presets.hpp"

namespace {

using hattn::Index;

/// The command line.
struct Options {
  std::string width;        ///< "tiny" or "medium"
  Index tokens = 0;         ///< T, also the model's sequence_length
  Index batch = 1;          ///< sequences per step
  int steps = 3;            ///< timed steps after the warm-up
  bool checkpoint = false;  ///< recompute the hierarchies' activations in backward
  std::string variant;      ///< hattn_scaling_variants: replace, residual, pooled or dense
  int levels = 0;           ///< hattn_scaling_variants: 3 .. 9
};

/// Peak resident set size of this process so far, in MiB (Linux reports ru_maxrss in KiB).
double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

/// Runs the measurement for width `C` and vocabulary `vocab`; returns the process exit code.
template <hattn::Config C>
int run(const Options& o, Index vocab) {
  using Model = hattn::Decoder<C, float>;
  Model model(vocab, o.tokens, /*seed=*/1);
  model.set_checkpointing(o.checkpoint);
  hattn::AdamW<float> optimizer(model.parameters(), hattn::AdamWOptions{.lr = 3e-4});

  const hattn_bench::Batch batch(o.batch, o.tokens, vocab);

  const auto step = [&] {
    model.zero_grad();
    const float loss = model.forward(batch.ids, batch.targets);
    model.backward();
    optimizer.step();
    return loss;
  };
  float loss = step();  // warm-up
  std::vector<double> seconds;
  for (int i = 0; i < o.steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    loss = step();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double best = *std::min_element(seconds.begin(), seconds.end());

  const nlohmann::json result = {
      {"width", o.width},
      {"variant", o.variant.empty() ? "replace" : o.variant},
      {"levels", C.levels},
      {"mixer", std::string(hattn::value_name(C.mixer))},
      {"tokens", o.tokens},
      {"batch", o.batch},
      {"steps", o.steps},
      {"checkpoint", o.checkpoint},
      {"seconds_per_step", best},  // the fastest timed step
      {"step_seconds", seconds},
      {"tokens_per_second", double(o.batch * o.tokens) / best},
      {"peak_rss_mib", peak_rss_mib()},
      {"parameters", model.parameter_count()},
      {"threads", hattn::max_threads()},
      {"loss", loss},
  };
  std::printf("%s\n", result.dump().c_str());
  return 0;
}

/// Parses a positive integer; nullopt if `s` is not one.
std::optional<long> positive(std::string_view s) {
  long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

/// Parses argv into `o`; returns an error message, empty on success.
std::string parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--checkpoint") {
      o.checkpoint = true;
      continue;
    }
    if (arg != "--width" && arg != "--tokens" && arg != "--batch" && arg != "--steps" && arg != "--variant" &&
        arg != "--levels")
      return "unknown argument '" + std::string(arg) + "'";
    if (i + 1 == argc) return std::string(arg) + " needs a value";
    const std::string_view value = argv[++i];
    if (arg == "--width") {
      o.width = value;
      continue;
    }
    if (arg == "--variant") {
      o.variant = value;
      continue;
    }
    const std::optional<long> v = positive(value);
    if (!v) return std::string(arg) + " must be a positive integer, got '" + std::string(value) + "'";
    if (arg == "--tokens") o.tokens = *v;
    if (arg == "--batch") o.batch = *v;
    if (arg == "--steps") o.steps = int(*v);
    if (arg == "--levels") o.levels = int(*v);
  }
  if (o.tokens == 0) return "--tokens is required";
#ifdef HATTN_SCALING_VARIANTS
  if (o.variant != "replace" && o.variant != "residual" && o.variant != "pooled" && o.variant != "dense")
    return "--variant must be replace, residual, pooled or dense";
  if (o.levels < 3 || o.levels > 9) return "--levels must be in [3, 9]";
  o.width = "tiny";
#else
  if (!o.variant.empty() || o.levels) return "--variant and --levels are hattn_scaling_variants' options";
  if (o.width != "tiny" && o.width != "medium") return "--width must be tiny or medium";
#endif
  return {};
}

#ifdef HATTN_SCALING_VARIANTS
/// The tiny width with variant v (0 replace, 1 residual, 2 pooled: residual with 16 summaries,
/// 3 dense, which has no tree: its levels stay 3) at `levels`.
consteval hattn::Config variant_config(int v, int levels) {
  hattn::Config c = hattn_bench::tiny_width;
  c.levels = v == 3 ? 3 : levels;
  if (v == 1 || v == 2) c.node_combine = hattn::NodeCombine::residual;
  if (v == 2) c.summaries = 16;
  if (v == 3) c.mixer = hattn::Mixer::dense;
  return c;
}

/// Runs variant v at levels 3 + I for the I-th entry of the sequence.
template <int V, int... I>
int run_variant(const Options& o, std::integer_sequence<int, I...>) {
  int status = -1;
  ((o.levels == 3 + I ? (status = run<variant_config(V, 3 + I)>(o, 256), true) : false) || ...);
  return status;
}

int run_variants(const Options& o) {
  const auto levels = std::make_integer_sequence<int, 7>{};  // 3 .. 9
  if (o.variant == "replace") return run_variant<0>(o, levels);
  if (o.variant == "residual") return run_variant<1>(o, levels);
  if (o.variant == "pooled") return run_variant<2>(o, levels);
  return run_variant<3>(o, levels);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const std::string error = parse(argc, argv, o); !error.empty()) {
    std::fprintf(stderr,
                 "hattn_scaling: %s\nusage: hattn_scaling --width tiny|medium --tokens T [--batch B] "
                 "[--steps N] [--checkpoint]\n       hattn_scaling_variants --variant replace|residual|pooled|dense "
                 "--levels 3..9 --tokens T [--batch B] [--steps N] [--checkpoint]\n",
                 error.c_str());
    return 1;
  }
  try {
#ifdef HATTN_SCALING_VARIANTS
    return run_variants(o);
#else
    return o.width == "tiny" ? run<hattn_bench::tiny_width>(o, 256) : run<hattn_bench::medium_width>(o, 8192);
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hattn_scaling: error: %s\n", e.what());
    return 1;
  }
}
