#pragma once
// The definitions of Commands<C> (commands.hpp) and the helpers they share; included only by the
// cli/builds_<preset>.cpp files, which instantiate them.

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "commands.hpp"
#include "hattn/data/listops.hpp"
#include "hattn/hattn.hpp"
#include "hattn/io/gpt2_bpe.hpp"
#include "hattn/train/checkpoint.hpp"
#include "metrics_log.hpp"
#include "plots.hpp"
#include "run_dir.hpp"

namespace hattn::cli {


inline std::unique_ptr<hattn::io::Tokenizer> tokenizer_for(const Preset& p, const Common& c) {
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

/// Says on stderr that a seed_compat model is not causal (every subcommand that runs one does).
inline void warn_if_not_causal(const Config& c) {
  if (!c.causal())
    fmt::print(stderr, "hattn: warning: variant notebook (seed_compat) reproduces the seed notebook's -1e9 * tril "
               "mask: it is NOT causal, an output reads later tokens of its chunk (SPEC.md)\n");
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
inline std::string lines(std::size_t n) { return fmt::format("{} line{}", n, n == 1 ? "" : "s"); }

inline std::string format_duration(double seconds) {
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
inline std::vector<std::int32_t> prompt_ids(const hattn::io::Tokenizer& tok, const std::string& prompt) {
  auto ids = tok.encode(prompt);
  check(!ids.empty(), "the prompt has no tokens (give a non-empty --prompt)");
  return ids;
}

// ---------------------------------------------------------------------------------------------------
// train

/// The ListOps task of a model with `sequence_length` tokens (LRA's generator, lengths scaled to
/// it), with `examples` held out from seed `seed` (stream 1; training draws use stream 0).
inline hattn::data::ListOpsTask listops_task(Index sequence_length, Index examples, std::uint64_t seed = 1) {
  check(examples >= 1, "--listops-examples must be >= 1, got ", examples);
  check(sequence_length >= 16, "ListOps needs a sequence of at least 16 tokens, the preset has ", sequence_length);
  return hattn::data::ListOpsTask(hattn::data::ListOpsOptions::for_sequence(sequence_length), sequence_length,
                                  examples, seed);
}

/// "[MAX 2 9 ... ] = 9 (the model: 9)": an example's expression (its first 60 characters) and
/// answer with the model's.
template <class Model>
std::string listops_example(const Model& model, const hattn::data::ListOpsExample& e) {
  std::string text = hattn::data::listops_text(e.tokens);
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  const hattn::data::ListOpsExample one[] = {e};
  return fmt::format("{} = {} (the model: {})", text, e.answer, hattn::data::listops_predict(model, one)[0]);
}

/// Sampling of the text samples `hattn train` prints (every --eval-every steps and at the end): a
/// temperature below `hattn generate`'s 0.8 reads better. Measured on six samples of 300 bytes,
/// top-k 40: of their words, 66% occur in the training split at 0.6 and 61% at 0.8 for the main
/// job's pooled model; 64% at 0.6, 56% at 0.8 and 43% at 1.0 for residual (docs/usage.md).
inline constexpr hattn::SampleOptions train_sample{.temperature = 0.6, .top_k = 40, .seed = 1};

/// What a training run reports that depends on its task: how a validation loss reads, what the
/// metrics log records with it, the text shown after each validation and at the end.
struct TaskReport {
  /// What a validation loss means: the text printed after it ("3.123 bits per byte", "accuracy
  /// 41.2%") and the fields logged with it.
  std::function<std::pair<std::string, nlohmann::json>(double loss)> validation;
  std::function<std::string()> progress_sample;           ///< shown after each validation
  std::function<std::string(Index tokens)> final_sample;  ///< shown at the end
  RightAxis loss_axis;  ///< the loss chart's second axis (none for an empty label)
};

/// The part of `hattn train` every task shares: resume, checkpoints, the metrics log, progress,
/// validation, divergence handling, the final files. `data` is the Trainer's data source.
template <class Model, class Data>
int run_training(const Preset& preset, const Variant& variant, const TrainArgs& a, Model& model, const Data& data,
                 hattn::TrainOptions o, const std::map<std::string, std::string>& meta, const TaskReport& report) {
  const fs::path ckpt = fs::path(a.out) / "checkpoint.safetensors", weights = fs::path(a.out) / "model.safetensors";
  const fs::path log_path = fs::path(a.out) / "metrics.jsonl", chart = fs::path(a.out) / "loss.svg";
  const bool validating = data.validation_windows() > 0;
  o.eval_every = validating ? o.eval_every : 0;
  hattn::Trainer<Model, Data> trainer(model, data, o);
  std::vector<std::pair<double, double>> train_curve, val_curve;
  if (!a.resume.empty()) {
    const auto c = hattn::load_training_checkpoint(a.resume, model);
    trainer.restore(c.state);
    fmt::print("resumed from {} at step {}\n", a.resume, c.state.step);
    if (c.state.step == o.steps)
      fmt::print("nothing to train: the checkpoint is at step {} of {}; writing the final files\n", o.steps, o.steps);
    // The log continues from the checkpoint: lines of steps it has not seen go (a killed run's).
    if (const auto trim = hattn::cli::trim_metrics(log_path, c.state.step); trim.dropped > 0)
      fmt::print("'{}': kept {} up to the checkpoint's step {}, dropped {} (later or repeated steps, torn or invalid "
                 "lines)\n", log_path.string(), lines(trim.kept), c.state.step, lines(trim.dropped));
  }
  fmt::print("model: {} parameters, levels {}, heads {}, d_model {}, sequence {}, batch {}; {} steps, lr {:g}, dropout {}{}\n",
             model.parameter_count(), Model::config.levels, Model::config.heads, Model::config.d_model,
             preset.sequence_length, o.batch, o.steps, o.lr, o.dropout ? "on" : "off",
             a.checkpointing ? "; gradient checkpointing" : "");

  hattn::cli::MetricsLog log(log_path, !a.resume.empty());
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
  auto log_eval = [&](std::int64_t step, double loss) {
    auto [text, fields] = report.validation(loss);
    nlohmann::json record{{"step", step}, {"val_loss", loss}};
    record.update(fields);
    log.append(record);
    val_curve.emplace_back(double(step), loss);
    return text;
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
    const std::string text = log_eval(e.step, e.loss);
    fmt::print("{}step {}: validation loss {:.4f}, {}\n", tty ? "\n" : "", e.step, e.loss, text);
    fmt::print("  {}\n", report.progress_sample());
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
  std::string final_text;
  if (validating && (val_curve.empty() || val_curve.back().first != double(trainer.step())))
    final_text = log_eval(trainer.step(), trainer.evaluate().loss);
  else if (validating)
    final_text = report.validation(val_curve.back().second).first;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  hattn::cli::write_line_chart_svg(chart, fmt::format("hattn {} ({}): loss", preset.name, variant.name), "step",
                                   "cross-entropy (nats per token)",
                                   {{"training", "#1f77b4", train_curve}, {"validation", "#d62728", val_curve}},
                                   report.loss_axis);
  if (validating) {
    const double final_loss = val_curve.back().second;
    fmt::print("done: {} steps in {}, validation loss {:.4f}, {}\n", trainer.step(), format_duration(seconds),
               final_loss, final_text);
  } else {
    fmt::print("done: {} steps in {} (no validation split: --validation 0)\n", trainer.step(),
               format_duration(seconds));
  }
  fmt::print("wrote {}, {}, {}, {}\n", ckpt.string(), weights.string(), log_path.string(), chart.string());
  fmt::print("{}\n", report.final_sample(a.sample_tokens));
  return 0;
}

template <Config C>
int Commands<C>::train(const Preset& preset, const Variant& variant, TrainArgs a, const Common& common) {
  using Model = hattn::Decoder<C>;
  const bool listops = a.task == "listops";
  check(listops || a.task == "text", "unknown task '", a.task, "': the tasks are text, listops");
  if (a.out.empty()) a.out = "runs/" + std::string(preset.name) + (listops ? "-listops" : "");
  const std::string_view saved[] = {"checkpoint.safetensors", "model.safetensors", "metrics.jsonl"};  // replaced via temporaries

  // --steps is the total, counted from step 0: a checkpoint beyond it has nothing left to train.
  const std::int64_t steps = a.steps > 0 ? a.steps : preset.steps;
  if (!a.resume.empty())
    if (const auto at = checkpoint_step(a.resume))
      check(*at <= steps, "'", a.resume, "' is already at step ", *at, ", beyond ",
            a.steps > 0 ? fmt::format("--steps {}", steps) : fmt::format("the preset's {} steps", steps),
            ": --steps is the total, counted from step 0; pass one above ", *at, " to train on");

  fmt::print("hattn train: preset {} ({}), variant {} ({}), {}\n", preset.name, preset.about, variant.name,
             variant.about, listops ? std::string("task ListOps (generated)") : "data " + a.data);
  warn_if_not_causal(C);
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

  hattn::TrainOptions o;
  o.steps = steps;
  o.batch = a.batch > 0 ? a.batch : preset.batch;
  o.micro_batches = a.micro_batches;
  o.lr = a.lr > 0 ? a.lr : preset.lr;
  o.min_lr = o.lr / 10;
  o.warmup_steps = a.warmup >= 0 ? a.warmup : o.steps / 20;
  o.weight_decay = a.weight_decay;
  o.clip = a.clip;
  o.eval_every = a.eval_every;
  o.eval_batches = 8;
  o.seed = a.seed;
  o.dropout = a.dropout.empty() ? preset.dropout : a.dropout == "on";

  Model model(preset.vocab_size, preset.sequence_length, a.seed);
  model.set_checkpointing(a.checkpointing);
  std::map<std::string, std::string> meta{{preset_key, std::string(preset.name)},
                                          {variant_key, std::string(variant.name)},
                                          {tokenizer_key, listops ? "listops" : std::string(preset.tokenizer)},
                                          {task_key, listops ? "listops" : "text"}};
  if (!a.resume.empty()) require_task(a.resume, listops ? "listops" : "text");

  if (listops) {
    const Index S = preset.sequence_length;
    const hattn::data::ListOpsTask task = listops_task(S, a.listops_examples);
    const std::span<const hattn::data::ListOpsExample> held_out(task.validation());
    // Accuracy during training on the first 500 held-out examples; at the end on all of them.
    const auto progress = held_out.first(std::min<std::size_t>(held_out.size(), 500));
    fmt::print("task: ListOps as the Long Range Arena generates it, expressions of {} to {} tokens; {} held-out "
               "examples (majority class {:.1f}%)\n", task.options().min_length + 1, task.options().max_length - 1,
               held_out.size(), 100 * hattn::data::listops_majority(held_out));
    TaskReport report{
        [&](double) {
          const double acc = hattn::data::listops_accuracy(model, progress);
          return std::pair{fmt::format("accuracy {:.1f}% on {} held-out examples", 100 * acc, progress.size()),
                           nlohmann::json{{"val_accuracy", acc}}};
        },
        [&] { return fmt::format("example: {}", listops_example(model, held_out[0])); },
        [&](Index) {
          return fmt::format("accuracy on all {} held-out examples: {:.2f}% (majority class {:.2f}%)\nexample: {}",
                             held_out.size(), 100 * hattn::data::listops_accuracy(model, held_out),
                             100 * hattn::data::listops_majority(held_out), listops_example(model, held_out[0]));
        }};
    return run_training(preset, variant, a, model, task, o, meta, report);
  }

  const auto tok = tokenizer_for(preset, common);
  std::size_t corpus_bytes = 0;
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
  auto sample = [&](Index n) {
    const std::vector<std::int32_t> start = tok->encode("\n");
    hattn::Tensor<std::int32_t, 2> ids(1, Index(start.size()));
    std::copy(start.begin(), start.end(), ids.data());
    hattn::SampleOptions options = train_sample;
    options.max_new_tokens = n;
    const auto out = hattn::generate(model, ids, options);
    return tok->decode(out[0]);
  };
  const auto bpb = [=](double loss) { return loss / std::log(2.0) / bytes_per_token; };
  TaskReport report{[=](double loss) {
                      return std::pair{fmt::format("{:.3f} bits per byte", bpb(loss)),
                                       nlohmann::json{{"val_bits_per_byte", bpb(loss)}}};
                    },
                    [&] { return fmt::format("sample: {:?}", sample(80)); },
                    [&](Index n) { return "sample:\n" + sample(n); },
                    {"bits per byte", 1 / std::log(2.0) / bytes_per_token}};
  return run_training(preset, variant, a, model, data, o, meta, report);
}

// ---------------------------------------------------------------------------------------------------
// generate, eval, attention

template <Config C>
int Commands<C>::generate(const Preset& preset, const Variant& variant, const GenerateArgs& a, const Common& common) {
  require_text(a.checkpoint, "generate");
  const auto tok = tokenizer_for(preset, common);
  hattn::Decoder<C> model(preset.vocab_size, preset.sequence_length);
  load_weights(a.checkpoint, model);
  warn_if_not_causal(C);
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

template <Config C>
int Commands<C>::eval(const Preset& preset, const Variant& variant, const EvalArgs& a, const Common& common) {
  const std::string task = a.task.empty() ? checkpoint_task(a.checkpoint) : a.task;
  check(task == "text" || task == "listops", "unknown task '", task, "': the tasks are text, listops");
  require_task(a.checkpoint, task);
  hattn::Decoder<C> model(preset.vocab_size, preset.sequence_length);
  load_weights(a.checkpoint, model);
  warn_if_not_causal(C);
  if (task == "listops") {
    check(a.data.empty(), "--data is for text: ListOps examples are generated (--listops-examples, --listops-seed)");
    const hattn::data::ListOpsTask set = listops_task(preset.sequence_length, a.listops_examples, a.listops_seed);
    const std::span<const hattn::data::ListOpsExample> examples(set.validation());
    const hattn::data::ListOpsScore score = hattn::data::listops_score(model, examples);
    Index right = 0;
    for (std::size_t i = 0; i < examples.size(); ++i) right += score.predicted[i] == examples[i].answer;
    const Index n = Index(examples.size());
    const double loss = score.loss;
    check(std::isfinite(loss), "the ListOps loss is ", loss, ": the checkpoint's weights are not usable");
    fmt::print("ListOps: {} examples (seed {}, stream 1), expressions of {} to {} tokens\n"
               "accuracy {:.2f}% ({} of {}), majority class {:.2f}%, answer loss {:.4f} nats\n",
               n, a.listops_seed, set.options().min_length + 1, set.options().max_length - 1,
               100 * double(right) / double(n), right, n, 100 * hattn::data::listops_majority(examples), loss);
    return 0;
  }
  check(!a.data.empty(), "--data is required for text: the file or directory to score");
  const auto tok = tokenizer_for(preset, common);
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

template <Config C>
int Commands<C>::attention(const Preset& preset, const Variant& variant, const AttentionArgs& a, const Common& common) {
  require_text(a.checkpoint, "attention");
  const auto tok = tokenizer_for(preset, common);
  hattn::Decoder<C> model(preset.vocab_size, preset.sequence_length);
  load_weights(a.checkpoint, model);
  warn_if_not_causal(C);
  auto ids = prompt_ids(*tok, a.prompt);
  if (Index(ids.size()) > preset.sequence_length) ids.erase(ids.begin(), ids.end() - preset.sequence_length);
  hattn::Tensor<std::int32_t, 2> prompt(1, Index(ids.size()));
  std::copy(ids.begin(), ids.end(), prompt.data());
  fs::create_directories(a.out);
  // The prompt's tokens along the axes: a printable character as itself, a space as '_', anything
  // else (a newline, part of a multi-byte character, a BPE token of several) as '.'.
  std::vector<std::string> chars;
  for (const std::int32_t id : ids) {
    const std::string s = tok->decode(std::span<const std::int32_t>(&id, 1));
    chars.push_back(s == " " ? "_" : s.size() == 1 && s[0] > 32 && s[0] < 127 ? s : ".");
  }
  for (const auto& map : model.attention_maps(prompt)) {
    const fs::path png = fs::path(a.out) / (map.name + ".png");
    hattn::cli::write_heatmap_png(png, map.probs,
                                  {.title = fmt::format("{}, mean over heads", map.name), .rows = chars, .cols = chars});
    fmt::print("wrote {} ({} x {})\n", png.string(), map.probs.dimension(0), map.probs.dimension(1));
  }
  return 0;
}


}  // namespace hattn::cli
