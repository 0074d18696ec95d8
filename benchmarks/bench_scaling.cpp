// hattn_scaling: time and peak memory of one training step for a given sequence length.
//
//   hattn_scaling --width tiny|medium --tokens T [--batch B] [--steps N] [--checkpoint]
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
    if (arg != "--width" && arg != "--tokens" && arg != "--batch" && arg != "--steps")
      return "unknown argument '" + std::string(arg) + "'";
    if (i + 1 == argc) return std::string(arg) + " needs a value";
    const std::string_view value = argv[++i];
    if (arg == "--width") {
      o.width = value;
      continue;
    }
    const std::optional<long> v = positive(value);
    if (!v) return std::string(arg) + " must be a positive integer, got '" + std::string(value) + "'";
    if (arg == "--tokens") o.tokens = *v;
    if (arg == "--batch") o.batch = *v;
    if (arg == "--steps") o.steps = int(*v);
  }
  if (o.width != "tiny" && o.width != "medium") return "--width must be tiny or medium";
  if (o.tokens == 0) return "--tokens is required";
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const std::string error = parse(argc, argv, o); !error.empty()) {
    std::fprintf(stderr,
                 "hattn_scaling: %s\nusage: hattn_scaling --width tiny|medium --tokens T [--batch B] "
                 "[--steps N] [--checkpoint]\n",
                 error.c_str());
    return 1;
  }
  try {
    return o.width == "tiny" ? run<hattn_bench::tiny_width>(o, 256) : run<hattn_bench::medium_width>(o, 8192);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hattn_scaling: error: %s\n", e.what());
    return 1;
  }
}
