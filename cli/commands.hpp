#pragma once
// The tool's subcommands that need a model's compile-time configuration (train, generate, eval,
// attention), as Commands<C> for every compiled build (cli/presets.hpp). Their definitions are in
// commands_impl.hpp, instantiated once per build in cli/builds_<preset>.cpp, so that the builds
// compile in parallel and main.cpp only dispatches to them.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "hattn/config.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/io/checkpoint_checks.hpp"
#include "hattn/train/checkpoint.hpp"
#include "corpus.hpp"
#include "presets.hpp"

namespace hattn::cli {

namespace fs = std::filesystem;

/// Exit status of a training run stopped by a non-finite loss or gradient.
inline constexpr int exit_diverged = 3;

/// Metadata keys the tool adds to checkpoints.
inline constexpr const char* preset_key = "hattn.preset";
inline constexpr const char* variant_key = "hattn.variant";
inline constexpr const char* tokenizer_key = "hattn.tokenizer";
/// What a run trained on: "text" (a corpus, next-token loss) or "listops" (generated ListOps,
/// the answer's loss). Checkpoints without it are text.
inline constexpr const char* task_key = "hattn.task";

/// The task a checkpoint was trained on (its hattn.task; "text" without one).
inline std::string checkpoint_task(const fs::path& path) {
  const auto meta = hattn::read_checkpoint_metadata(path);
  const auto it = meta.find(task_key);
  return it == meta.end() ? "text" : it->second;
}

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

/// The step a training checkpoint is at (its hattn.train_state), or nothing when it has none;
/// a malformed hattn.train_state throws hattn::Error naming the file and the field.
inline std::optional<std::int64_t> checkpoint_step(const fs::path& path) {
  const auto meta = hattn::read_checkpoint_metadata(path);
  const auto it = meta.find(hattn::train_state_key);
  if (it == meta.end()) return std::nullopt;
  return hattn::parse_train_state(it->second, "'" + path.string() + "': ").step;
}

/// Throws hattn::Error unless checkpoint `path` was trained on `task`.
inline void require_task(const fs::path& path, const std::string& task) {
  const std::string trained = checkpoint_task(path);
  check(trained == task, "'", path.string(), "' was trained on task ", trained, ", not ", task);
}

/// Throws hattn::Error unless checkpoint `path` was trained on text: `command` reads a prompt.
inline void require_text(const fs::path& path, const char* command) {
  check(checkpoint_task(path) == "text", "'", path.string(), "' was trained on ListOps: ", command,
        " reads text; score it with hattn eval --task listops");
}

/// Options of `hattn train`.
struct TrainArgs {
  std::string task = "text";  // "text" or "listops"
  Index listops_examples = 2000;  // held-out ListOps examples
  std::string preset = "tiny";
  std::string variant = "pooled";  // docs/variants.md: learns most per second; --variant replace is the seed's rule
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
  std::string dropout;         // "on", "off" (dropout p = 0.1, SPEC.md, in training forwards); empty: the preset's
};

/// Options of `hattn generate`.
struct GenerateArgs {
  std::string checkpoint = "runs/tiny/checkpoint.safetensors";
  std::string prompt = "\n";
  Index tokens = 200;
  double temperature = 0.8;
  Index top_k = 40;
  double top_p = 1.0;
  std::uint64_t seed = 0;
};

/// Options of `hattn eval`.
struct EvalArgs {
  std::string checkpoint = "runs/tiny/checkpoint.safetensors";
  std::string data;
  std::string task;                // empty: the checkpoint's
  Index listops_examples = 2000;   // ListOps examples to score
  std::uint64_t listops_seed = 2;  // their seed (training's held-out set uses 1)
};

/// Options of `hattn attention`.
struct AttentionArgs {
  std::string checkpoint = "runs/tiny/checkpoint.safetensors";
  std::string prompt;
  std::string out = "attention";
};

/// The subcommands of one compiled build: configuration `C`, which is `preset`'s width with
/// `variant`'s fields. Each returns the process's exit status.
template <Config C>
struct Commands {
  /// `hattn train`: trains on a corpus, checkpoints, samples.
  static int train(const Preset& preset, const Variant& variant, TrainArgs a, const Common& common);
  /// `hattn generate`: continues a prompt.
  static int generate(const Preset& preset, const Variant& variant, const GenerateArgs& a, const Common& common);
  /// `hattn eval`: loss, perplexity and bits per byte of a text.
  static int eval(const Preset& preset, const Variant& variant, const EvalArgs& a, const Common& common);
  /// `hattn attention`: one heat map per attention map of a prompt.
  static int attention(const Preset& preset, const Variant& variant, const AttentionArgs& a, const Common& common);
};

}  // namespace hattn::cli
