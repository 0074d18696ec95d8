// hattn: train, sample, evaluate and inspect hierarchical attention decoders from the command line.
//
//   hattn train [--preset tiny] [--data PATH] [--out DIR] [--resume CHECKPOINT] ...
//   hattn generate --checkpoint FILE --prompt TEXT
//   hattn eval --checkpoint FILE --data FILE
//   hattn inspect FILE
//   hattn attention --checkpoint FILE --prompt TEXT --out DIR
//   hattn tokenize [--bpe DIR] < text
//
// Errors print "hattn: error: <message>" and exit 1; a training run stopped by a NaN or infinite
// loss exits 3 and keeps the last good checkpoint. A training run locks its output directory, so a
// second one there fails at once, and it survives kill -9: the checkpoint is replaced atomically,
// metrics.jsonl is written line by line and cut back to the checkpoint on --resume, and the next
// start removes the temporary file of a save that was killed.

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "corpus.hpp"
#include "hattn/hattn.hpp"
#include "hattn/io/gpt2_bpe.hpp"
#include "hattn/train/checkpoint.hpp"
#include "metrics_log.hpp"
#include "plots.hpp"
#include "presets.hpp"
#include "run_dir.hpp"

namespace fs = std::filesystem;
using hattn::Index;
using hattn::cli::Preset;

namespace {

/// Exit status of a training run stopped by a non-finite loss or gradient.
constexpr int exit_diverged = 3;

/// Metadata keys the tool adds to checkpoints.
constexpr const char* preset_key = "hattn.preset";
constexpr const char* tokenizer_key = "hattn.tokenizer";

/// Options every subcommand shares.
struct Common {
  std::string bpe_dir;  // GPT-2 encoder.json + vocab.bpe, for presets with the gpt2 tokenizer
  int threads = 0;      // 0: all cores
};

/// Throws hattn::Error(parts...) unless `ok`: the tool's own errors carry no op prefix.
template <class... Parts>
void check(bool ok, const Parts&... parts) {
  if (!ok) throw hattn::Error(hattn::detail::concat(parts...));
}

std::unique_ptr<hattn::io::Tokenizer> tokenizer_for(const Preset& p, const Common& c) {
  try {
    return hattn::io::make_tokenizer(p.tokenizer, c.bpe_dir);
  } catch (const hattn::Error& e) {
    if (p.tokenizer != "gpt2") throw;
    throw hattn::Error(fmt::format("{} (preset '{}' uses GPT-2's BPE: pass --bpe DIR or set HATTN_GPT2_DIR to a "
                                   "directory with encoder.json and vocab.bpe; scripts/fetch_gpt2_bpe.sh DIR "
                                   "fetches them)", e.what(), p.name));
  }
}

/// True when every weight of `model` is finite.
template <class Model>
bool finite_weights(const Model& model) {
  for (const auto& p : model.parameters())
    for (Index i = 0; i < p.size(); ++i)
      if (!std::isfinite(p.value[i])) return false;
  return true;
}

/// Thrown from the training callbacks to stop a run whose weights stopped being finite.
struct Diverged : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The preset a checkpoint was made with: its `hattn.preset` metadata, checked against the compiled
/// preset's shape; without it, the compiled preset of the same shape.
const Preset& preset_of_checkpoint(const fs::path& path) {
  const auto meta = hattn::read_checkpoint_metadata(path);
  const auto cfg_it = meta.find(hattn::config_key);
  check(cfg_it != meta.end(), "'", path.string(),
                         "' has no hattn.config metadata: not a hattn checkpoint");
  const auto c = hattn::parse_checkpoint_config(cfg_it->second, "'" + path.string() + "': ");
  const Preset& p = hattn::cli::preset_for(c.config(), c.vocab_size, c.sequence_length);
  if (const auto it = meta.find(preset_key); it != meta.end())
    check(it->second == p.name, "'", path.string(), "' names preset '", it->second,
                           "' but has the shape of preset '", p.name, "'");
  return p;
}

/// The step a training checkpoint is at (its hattn.train_state), or nothing when it has none;
/// a malformed hattn.train_state throws hattn::Error naming the file and the field.
std::optional<std::int64_t> checkpoint_step(const fs::path& path) {
  const auto meta = hattn::read_checkpoint_metadata(path);
  const auto it = meta.find(hattn::train_state_key);
  if (it == meta.end()) return std::nullopt;
  return hattn::parse_train_state(it->second, "'" + path.string() + "': ").step;
}

/// Loads weights from a training checkpoint or a model checkpoint, whichever `path` is.
template <hattn::Config C>
void load_weights(const fs::path& path, hattn::Decoder<C>& model) {
  const auto meta = hattn::read_checkpoint_metadata(path);
  if (meta.count(hattn::train_state_key)) {
    hattn::load_training_checkpoint(path, model);
  } else {
    for (const auto& note : hattn::load_safetensors(model, path).notes) fmt::print(stderr, "note: {}\n", note);
  }
}

/// "1 line", "<n> lines".
std::string lines(std::size_t n) { return fmt::format("{} line{}", n, n == 1 ? "" : "s"); }

std::string format_duration(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  return s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, s / 60 % 60) : fmt::format("{}m{:02}s", s / 60, s % 60);
}

/// Decodes and prints one generated token at a time (the bytes of a multi-byte character may
/// arrive in pieces; the terminal joins them).
struct StreamPrinter {
  const hattn::io::Tokenizer& tok;
  void operator()(Index, std::int32_t id) const {
    const std::string s = tok.decode(std::span<const std::int32_t>(&id, 1));
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  }
};

/// Prompt ids, cropped to the model's last sequence_length tokens; throws for an empty prompt.
std::vector<std::int32_t> prompt_ids(const hattn::io::Tokenizer& tok, const std::string& prompt) {
  auto ids = tok.encode(prompt);
  check(!ids.empty(), "the prompt has no tokens (give a non-empty --prompt)");
  return ids;
}

// ---------------------------------------------------------------------------------------------------
// train

struct TrainArgs {
  std::string preset = "tiny";
  std::string data = hattn::cli::default_corpus;
  std::string out;          // default runs/<preset>
  std::string resume;       // a training checkpoint
  std::int64_t steps = 0;   // 0: the preset's default
  Index batch = 0;          // 0: the preset's
  Index micro_batches = 1;
  double lr = 0;            // 0: the preset's
  std::int64_t warmup = -1; // -1: 5% of the steps
  double weight_decay = 0.1;
  double clip = 1.0;
  std::int64_t eval_every = 250;
  std::int64_t save_every = 500;
  Index sample_tokens = 160;
  std::uint64_t seed = 0;
  double validation = 0.1;
  bool checkpointing = false;  // recompute activations in backward (Decoder::set_checkpointing)
};

/// Default steps per preset: tiny trains for a few minutes on 2 cores.
std::int64_t default_steps(const Preset& p) { return p.name == "tiny" ? 1500 : p.name == "small" ? 3000 : 20000; }

template <hattn::Config C>
int run_train(const Preset& preset, TrainArgs a, const Common& common) {
  using Model = hattn::Decoder<C>;
  const auto tok = tokenizer_for(preset, common);
  if (a.out.empty()) a.out = "runs/" + std::string(preset.name);
  const std::string_view saved[] = {"checkpoint.safetensors", "model.safetensors", "metrics.jsonl"};  // replaced via temporaries
  const fs::path ckpt = fs::path(a.out) / saved[0], weights = fs::path(a.out) / saved[1];
  const fs::path log_path = fs::path(a.out) / saved[2], chart = fs::path(a.out) / "loss.svg";

  // --steps is the total, counted from step 0: a checkpoint beyond it has nothing left to train.
  const std::int64_t steps = a.steps > 0 ? a.steps : default_steps(preset);
  auto check_resume_step = [&](std::int64_t at) {
    check(at <= steps, "'", a.resume, "' is already at step ", at, ", beyond ",
          a.steps > 0 ? fmt::format("--steps {}", steps) : fmt::format("the preset's {} steps", steps),
          ": --steps is the total, counted from step 0; pass one above ", at, " to train on");
  };
  if (!a.resume.empty())
    if (const auto at = checkpoint_step(a.resume)) check_resume_step(*at);

  std::size_t corpus_bytes = 0;
  fmt::print("hattn train: preset {} ({}), data {}\n", preset.name, preset.about, a.data);
  // One run per directory: a second one fails here, before it writes anything.
  fs::create_directories(a.out);
  const hattn::cli::RunLock lock(a.out);
  for (const auto& t : hattn::cli::remove_stale_temporaries(lock, saved)) {
    if (t.removed)
      fmt::print("removed '{}' ({} bytes), left by a save of process {}, which has ended\n", t.path.string(), t.bytes,
                 t.pid);
    else
      fmt::print(stderr, "hattn: warning: kept '{}' ({} bytes): process {} is running and may be writing it; "
                 "remove the file if it is not\n", t.path.string(), t.bytes, t.pid);
  }
  const hattn::GemmInfo gemm = hattn::gemm_info();
  fmt::print("{}\n", gemm.summary());
  if (!gemm.warning.empty()) fmt::print(stderr, "{}\n", gemm.warning);
  std::vector<std::int32_t> tokens = hattn::cli::read_corpus(a.data, *tok, &corpus_bytes);
  const Index needed = hattn::data::Dataset::minimum_tokens(preset.sequence_length, a.validation);
  check(Index(tokens.size()) >= needed, "the corpus has ", tokens.size(), " tokens, too few for preset ",
        preset.name, ": sequences of ", preset.sequence_length, " tokens with --validation ", a.validation,
        " need at least ", needed,
        a.validation > 0 ? " (a whole sequence in the held-out part, one sequence + 1 in the rest)"
                         : " (one sequence + 1)");
  hattn::data::Dataset data(std::move(tokens), preset.sequence_length, a.validation);
  const auto val = data.validation_tokens();
  const double val_bytes = double(tok->decode(std::vector<std::int32_t>(val.begin(), val.end())).size());
  const double bytes_per_token = val.empty() ? 1.0 : val_bytes / double(val.size());
  fmt::print("corpus: {:.1f} MB, {} tokens ({} training, {} validation)\n", double(corpus_bytes) / 1e6,
             data.tokens().size(), data.train_tokens().size(), val.size());

  hattn::TrainOptions o;
  o.steps = steps;
  o.batch = a.batch > 0 ? a.batch : preset.batch;
  o.micro_batches = a.micro_batches;
  o.lr = a.lr > 0 ? a.lr : preset.lr;
  o.min_lr = o.lr / 10;
  o.warmup_steps = a.warmup >= 0 ? a.warmup : o.steps / 20;
  o.weight_decay = a.weight_decay;
  o.clip = a.clip;
  const bool validating = data.validation_windows() > 0;  // false with --validation 0
  o.eval_every = validating ? a.eval_every : 0;
  o.eval_batches = 8;
  o.seed = a.seed;

  Model model(preset.vocab_size, preset.sequence_length, a.seed);
  model.set_checkpointing(a.checkpointing);
  hattn::Trainer<Model> trainer(model, data, o);
  std::vector<std::pair<double, double>> train_curve, val_curve;
  if (!a.resume.empty()) {
    const auto c = hattn::load_training_checkpoint(a.resume, model);
    check_resume_step(c.state.step);
    trainer.restore(c.state);
    fmt::print("resumed from {} at step {}\n", a.resume, c.state.step);
    if (c.state.step == steps)
      fmt::print("nothing to train: the checkpoint is at step {} of {}; writing the final files\n", steps, steps);
    // The log continues from the checkpoint: lines of steps it has not seen go (a killed run's).
    if (const auto trim = hattn::cli::trim_metrics(log_path, c.state.step); trim.dropped > 0)
      fmt::print("'{}': kept {} up to the checkpoint's step {}, dropped {} (later or repeated steps, torn or invalid "
                 "lines)\n", log_path.string(), lines(trim.kept), c.state.step, lines(trim.dropped));
  }
  fmt::print("model: {} parameters, levels {}, heads {}, d_model {}, sequence {}, batch {}; {} steps, lr {:g}{}\n",
             model.parameter_count(), C.levels, C.heads, C.d_model, preset.sequence_length, o.batch, o.steps, o.lr,
             a.checkpointing ? "; gradient checkpointing" : "");

  hattn::cli::MetricsLog log(log_path, !a.resume.empty());
  const std::map<std::string, std::string> meta{{preset_key, std::string(preset.name)},
                                                {tokenizer_key, std::string(preset.tokenizer)}};
  // The step of the checkpoint in --out this run can fall back on: the one it resumed from if that
  // is the same file, else none until it saves.
  std::error_code same_ec;
  const bool resumed_here = !a.resume.empty() && fs::equivalent(a.resume, ckpt, same_ec);
  std::int64_t last_saved = resumed_here ? trainer.step() : 0;
  auto save = [&] {
    // Never replace a checkpoint with weights that overflowed: stop instead.
    if (!finite_weights(model))
      throw Diverged(fmt::format("the weights are no longer finite after step {}", trainer.step()));
    hattn::save_training_checkpoint(ckpt, model, trainer.state(), meta);
    last_saved = trainer.step();
  };
  auto sample = [&](Index n) {
    const std::vector<std::int32_t> start = tok->encode("\n");
    hattn::Tensor<std::int32_t, 2> ids(1, Index(start.size()));
    std::copy(start.begin(), start.end(), ids.data());
    const auto out = hattn::generate(model, ids, {.max_new_tokens = n, .temperature = 0.8, .top_k = 40, .seed = 1});
    return tok->decode(out[0]);
  };

  const bool tty = ::isatty(STDOUT_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t first = trainer.step();
  double tokens_done = 0;
  trainer.on_step = [&](const hattn::StepInfo& s) {
    tokens_done += double(s.tokens);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = tokens_done / std::max(elapsed, 1e-9);
    const double eta = elapsed / double(s.step + 1 - first) * double(o.steps - s.step - 1);
    log.append({{"step", s.step + 1}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
                {"tokens_per_s", rate}, {"seconds", elapsed}});
    train_curve.emplace_back(double(s.step + 1), s.loss);
    const int width = 24, filled = int(width * double(s.step + 1) / double(o.steps));
    const std::string bar = std::string(std::size_t(filled), '=') + std::string(std::size_t(width - filled), ' ');
    const std::string line = fmt::format("step {:>6}/{} [{}] loss {:.4f} | {:.1f}k tok/s | ETA {}", s.step + 1,
                                         o.steps, bar, s.loss, rate / 1e3, format_duration(eta));
    if (tty) {
      fmt::print("\r{}", line);
      std::fflush(stdout);
    } else if ((s.step + 1) % 50 == 0 || s.step + 1 == o.steps) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    if (a.save_every > 0 && (s.step + 1) % a.save_every == 0) save();
  };
  trainer.on_eval = [&](const hattn::EvalInfo& e) {
    const double bpb = e.loss / std::log(2.0) / bytes_per_token;
    log.append({{"step", e.step}, {"val_loss", e.loss}, {"val_bits_per_byte", bpb}});
    val_curve.emplace_back(double(e.step), e.loss);
    fmt::print("{}step {}: validation loss {:.4f}, {:.3f} bits per byte\n", tty ? "\n" : "", e.step, e.loss, bpb);
    fmt::print("  sample: {:?}\n", sample(80));
    std::fflush(stdout);
  };

  hattn::TrainResult result;
  std::string diverged;
  try {
    result = trainer.run();
  } catch (const Diverged& e) {
    diverged = e.what();
  }
  if (tty) fmt::print("\n");
  if (!diverged.empty() || result.status != hattn::TrainStatus::completed) {
    fmt::print(stderr, "hattn: error: {}\n", diverged.empty() ? result.message : diverged);
    if (last_saved > 0)
      fmt::print(stderr, "hattn: kept the last checkpoint, {} (step {}, finite weights); nothing later was saved\n",
                 ckpt.string(), last_saved);
    else if (!a.resume.empty())
      fmt::print(stderr, "hattn: no checkpoint was saved in '{}'; '{}', which the run resumed from (step {}), is "
                 "unchanged\n", a.out, a.resume, first);
    else
      fmt::print(stderr, "hattn: no checkpoint was saved\n");
    return exit_diverged;
  }
  save();
  hattn::save_safetensors(model, weights, meta);
  // The final validation, unless the last step just ran one.
  if (validating && (val_curve.empty() || val_curve.back().first != double(trainer.step()))) {
    const auto e = trainer.evaluate();
    log.append({{"step", trainer.step()}, {"val_loss", e.loss},
                {"val_bits_per_byte", e.loss / std::log(2.0) / bytes_per_token}});
    val_curve.emplace_back(double(trainer.step()), e.loss);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  hattn::cli::write_line_chart_svg(chart, fmt::format("hattn {}: loss", preset.name), "step",
                                   "cross-entropy (nats per token)",
                                   {{"training", "#1f77b4", train_curve}, {"validation", "#d62728", val_curve}});
  if (validating) {
    const double final_loss = val_curve.back().second, bpb = final_loss / std::log(2.0) / bytes_per_token;
    fmt::print("done: {} steps in {}, validation loss {:.4f} = {:.3f} bits per byte\n", trainer.step(),
               format_duration(seconds), final_loss, bpb);
  } else {
    fmt::print("done: {} steps in {} (no validation split: --validation 0)\n", trainer.step(),
               format_duration(seconds));
  }
  fmt::print("wrote {}, {}, {}, {}\n", ckpt.string(), weights.string(), log_path.string(), chart.string());
  fmt::print("sample:\n{}\n", sample(a.sample_tokens));
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// generate, eval, attention

struct GenerateArgs {
  std::string checkpoint = "runs/tiny/checkpoint.safetensors";
  std::string prompt = "\n";
  Index tokens = 200;
  double temperature = 0.8;
  Index top_k = 40;
  double top_p = 1.0;
  std::uint64_t seed = 0;
};

template <hattn::Config C>
int run_generate(const Preset& preset, const GenerateArgs& a, const Common& common) {
  const auto tok = tokenizer_for(preset, common);
  hattn::Decoder<C> model(preset.vocab_size, preset.sequence_length);
  load_weights(a.checkpoint, model);
  const auto ids = prompt_ids(*tok, a.prompt);
  hattn::Tensor<std::int32_t, 2> prompt(1, Index(ids.size()));
  std::copy(ids.begin(), ids.end(), prompt.data());
  const hattn::SampleOptions options{.max_new_tokens = a.tokens, .temperature = a.temperature, .top_k = a.top_k,
                                     .top_p = a.top_p, .seed = a.seed, .end_id = tok->eot()};
  hattn::check_sample_options(options);  // before anything is printed
  std::fwrite(a.prompt.data(), 1, a.prompt.size(), stdout);
  hattn::generate(model, prompt, options, StreamPrinter{*tok});
  std::fputc('\n', stdout);
  return 0;
}

struct EvalArgs {
  std::string checkpoint = "runs/tiny/checkpoint.safetensors";
  std::string data;
};

template <hattn::Config C>
int run_eval(const Preset& preset, const EvalArgs& a, const Common& common) {
  const auto tok = tokenizer_for(preset, common);
  hattn::Decoder<C> model(preset.vocab_size, preset.sequence_length);
  load_weights(a.checkpoint, model);
  std::size_t bytes = 0;
  const auto tokens = hattn::cli::read_corpus(a.data, *tok, &bytes);
  check(tokens.size() >= 2, "'", a.data, "' has ", tokens.size(),
                         " token(s): at least 2 are needed to predict one");
  // Consecutive windows of up to S + 1 tokens (the last may be shorter): every token after the
  // first is predicted once, from the tokens before it in its window.
  const Index S = preset.sequence_length, n = Index(tokens.size());
  double nats = 0;
  Index counted = 0;
  for (Index start = 0; start + 1 < n; start += S) {
    const Index len = std::min(S, n - 1 - start);
    hattn::Tensor<std::int32_t, 2> ids(1, len), targets(1, len);
    for (Index t = 0; t < len; ++t) ids(0, t) = tokens[std::size_t(start + t)], targets(0, t) = tokens[std::size_t(start + t + 1)];
    nats += double(model.forward(ids, targets, false)) * double(len);
    counted += len;
  }
  const double loss = nats / double(counted);
  check(std::isfinite(loss), "the loss on '", a.data, "' is ", loss, ": the checkpoint's weights are not usable");
  fmt::print("{}: {} tokens, {} bytes\nloss {:.4f} nats per token, perplexity {:.3f}, {:.4f} bits per byte\n",
             a.data, counted, bytes, loss, std::exp(loss), nats / std::log(2.0) / double(bytes));
  return 0;
}

struct AttentionArgs {
  std::string checkpoint = "runs/tiny/checkpoint.safetensors";
  std::string prompt;
  std::string out = "attention";
};

template <hattn::Config C>
int run_attention(const Preset& preset, const AttentionArgs& a, const Common& common) {
  const auto tok = tokenizer_for(preset, common);
  hattn::Decoder<C> model(preset.vocab_size, preset.sequence_length);
  load_weights(a.checkpoint, model);
  auto ids = prompt_ids(*tok, a.prompt);
  if (Index(ids.size()) > preset.sequence_length) ids.erase(ids.begin(), ids.end() - preset.sequence_length);
  hattn::Tensor<std::int32_t, 2> prompt(1, Index(ids.size()));
  std::copy(ids.begin(), ids.end(), prompt.data());
  fs::create_directories(a.out);
  for (const auto& map : model.attention_maps(prompt)) {
    const fs::path png = fs::path(a.out) / (map.name + ".png");
    hattn::cli::write_heatmap_png(png, map.probs);
    fmt::print("wrote {} ({} x {})\n", png.string(), map.probs.dimension(0), map.probs.dimension(1));
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// inspect, tokenize

int run_inspect(const std::string& path) {
  const auto file = hattn::io::read_safetensors(path);
  const auto& meta = file.metadata();
  auto get = [&](const char* key) { const auto it = meta.find(key); return it == meta.end() ? std::string("-") : it->second; };
  fmt::print("{}\n", path);
  fmt::print("config:    {}\npreset:    {}\ntokenizer: {}\n", get(hattn::config_key), get(preset_key), get(tokenizer_key));
  if (meta.count(hattn::train_state_key)) fmt::print("training:  {}\n", get(hattn::train_state_key));
  Index params = 0, trainable = 0, moments = 0;
  for (const auto& name : file.names()) {
    const auto& info = file.info(name);
    if (name.starts_with("optimizer.")) {
      moments += info.numel();
      continue;
    }
    params += info.numel();
    if (name != "pos_encoding.position_embedding_layer.weight") trainable += info.numel();
  }
  fmt::print("parameters: {} ({} trainable), optimizer moments: {}\ntensors:\n", params, trainable, moments);
  for (const auto& name : file.names()) {
    if (name.starts_with("optimizer.")) continue;
    const auto& info = file.info(name);
    fmt::print("  {:<72} {} {}\n", name, hattn::io::dtype_name(info.dtype), hattn::io::detail::bracket_shape(info.shape));
  }
  return 0;
}

int run_tokenize(const Common& common) {
  std::unique_ptr<hattn::io::Tokenizer> tok;
  // --bpe DIR: GPT-2's BPE from DIR, whose files must load (a missing one is an error, never a
  // quiet fall-back to bytes); without --bpe, bytes.
  tok = hattn::io::make_tokenizer(common.bpe_dir.empty() ? "byte" : "gpt2", common.bpe_dir);
  const std::string text{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  const auto ids = tok->encode(text);
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  fmt::print("{}\n", line);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit makes writes fail (and get reported) instead of killing us
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line into a file or pipe too: a killed run's log is whole
  CLI::App app{"hattn: hierarchical attention decoders on the CPU"};
  app.require_subcommand(1);
  app.fallthrough();  // --bpe and --threads may follow the subcommand too
  Common common;
  app.add_option("--bpe", common.bpe_dir, "directory with GPT-2's encoder.json and vocab.bpe")
      ->envname("HATTN_GPT2_DIR");
  app.add_option("--threads", common.threads, "threads to use (0: all cores)")->check(CLI::NonNegativeNumber);

  TrainArgs ta;
  auto* train = app.add_subcommand("train", "train a preset on a text file or directory, then sample");
  train->add_option("--preset", ta.preset, "model preset: " + hattn::cli::preset_names())->capture_default_str();
  train->add_option("--data", ta.data, "text file, or directory of text files")->capture_default_str();
  train->add_option("--out", ta.out, "output directory (default runs/<preset>)");
  train->add_option("--resume", ta.resume, "continue from this training checkpoint");
  train->add_option("--steps", ta.steps, "optimizer steps in all (default: the preset's)");
  train->add_option("--batch", ta.batch, "sequences per step (default: the preset's)");
  train->add_option("--micro-batches", ta.micro_batches, "gradient accumulation: passes per step")->capture_default_str();
  train->add_option("--lr", ta.lr, "peak learning rate (default: the preset's)");
  train->add_option("--warmup", ta.warmup, "warmup steps (default: 5% of the steps)");
  train->add_option("--weight-decay", ta.weight_decay, "AdamW weight decay")->capture_default_str();
  train->add_option("--clip", ta.clip, "max gradient norm (0: off)")->capture_default_str();
  train->add_option("--eval-every", ta.eval_every, "validate (and sample) every N steps")->capture_default_str();
  train->add_option("--save-every", ta.save_every, "checkpoint every N steps")->capture_default_str();
  train->add_option("--sample-tokens", ta.sample_tokens, "tokens of the final sample")->capture_default_str();
  train->add_option("--seed", ta.seed, "initialization, dropout and batch seed")->capture_default_str();
  train->add_option("--validation", ta.validation, "fraction of the corpus held out")->capture_default_str();
  train->add_flag("--gradient-checkpointing", ta.checkpointing,
                  "recompute the hierarchies' activations, the hidden layers and the logits in backward: less memory, same gradients");

  GenerateArgs ga;
  auto* gen = app.add_subcommand("generate", "continue a prompt");
  gen->add_option("--checkpoint", ga.checkpoint, "training or model checkpoint")->capture_default_str();
  gen->add_option("--prompt", ga.prompt, "text to continue");
  gen->add_option("--tokens", ga.tokens, "tokens to generate")->capture_default_str();
  gen->add_option("--temperature", ga.temperature, "0: greedy")->capture_default_str();
  gen->add_option("--top-k", ga.top_k, "keep the k most likely tokens (0: all)")->capture_default_str();
  gen->add_option("--top-p", ga.top_p, "nucleus sampling threshold")->capture_default_str();
  gen->add_option("--seed", ga.seed, "sampling seed")->capture_default_str();

  EvalArgs ea;
  auto* eval = app.add_subcommand("eval", "loss, perplexity and bits per byte of a text file");
  eval->add_option("--checkpoint", ea.checkpoint, "training or model checkpoint")->capture_default_str();
  eval->add_option("--data", ea.data, "text file or directory")->required();

  std::string inspect_path;
  auto* inspect = app.add_subcommand("inspect", "configuration, preset, parameters and tensors of a checkpoint");
  inspect->add_option("checkpoint", inspect_path, "checkpoint file")->required();

  AttentionArgs aa;
  auto* attn = app.add_subcommand("attention", "attention maps of a prompt, one PNG per level and layer");
  attn->add_option("--checkpoint", aa.checkpoint, "training or model checkpoint")->capture_default_str();
  attn->add_option("--prompt", aa.prompt, "text to look at")->required();
  attn->add_option("--out", aa.out, "output directory")->capture_default_str();

  auto* tokenize = app.add_subcommand("tokenize", "print the token ids of standard input");

  CLI11_PARSE(app, argc, argv);
  try {
    std::unique_ptr<hattn::ThreadLimit> limit;
    if (common.threads > 0) limit = std::make_unique<hattn::ThreadLimit>(common.threads);
    if (*train) {
      const Preset& p = ta.resume.empty() ? hattn::cli::find_preset(ta.preset) : preset_of_checkpoint(ta.resume);
      if (!ta.resume.empty() && train->count("--preset") && p.name != ta.preset)
        throw hattn::Error(fmt::format("'{}' was trained with preset '{}', not '{}'", ta.resume, p.name, ta.preset));
      return hattn::cli::with_preset(p, [&]<hattn::Config C>(const Preset& q) { return run_train<C>(q, ta, common); });
    }
    if (*gen)
      return hattn::cli::with_preset(preset_of_checkpoint(ga.checkpoint),
                                     [&]<hattn::Config C>(const Preset& q) { return run_generate<C>(q, ga, common); });
    if (*eval)
      return hattn::cli::with_preset(preset_of_checkpoint(ea.checkpoint),
                                     [&]<hattn::Config C>(const Preset& q) { return run_eval<C>(q, ea, common); });
    if (*attn)
      return hattn::cli::with_preset(preset_of_checkpoint(aa.checkpoint),
                                     [&]<hattn::Config C>(const Preset& q) { return run_attention<C>(q, aa, common); });
    if (*inspect) return run_inspect(inspect_path);
    if (*tokenize) return run_tokenize(common);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "hattn: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
