// hattn: train, sample, evaluate and inspect hierarchical attention decoders from the command line.
//
//   hattn train [--preset tiny] [--variant replace] [--data PATH] [--out DIR] [--resume CHECKPOINT] ...
//   hattn generate --checkpoint FILE --prompt TEXT
//   hattn eval --checkpoint FILE --data FILE
//   hattn train --task listops [--preset small] ...;  hattn eval --checkpoint FILE --task listops
//   hattn inspect FILE
//   hattn attention --checkpoint FILE --prompt TEXT --out DIR
//   hattn tokenize [--bpe DIR] < text
//
// Errors print "hattn: error: <message>" and exit 1; a training run stopped by a NaN or infinite
// loss exits 3 and keeps the last good checkpoint. A training run locks its output directory, so a
// second one there fails at once, and it survives kill -9: the checkpoint is replaced atomically,
// metrics.jsonl is written line by line and cut back to the checkpoint on --resume, and the next
// start removes the temporary file of a save that was killed. The subcommands that run a model
// live in commands_impl.hpp, compiled once per (preset, variant) in builds_<preset>.cpp.

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "hattn/hattn.hpp"
#include "presets.hpp"

namespace fs = std::filesystem;
using hattn::Index;
using hattn::cli::check;
using hattn::cli::Common;
using hattn::cli::Preset;
using hattn::cli::preset_key;
using hattn::cli::tokenizer_key;
using hattn::cli::Variant;
using hattn::cli::variant_key;

namespace {

/// The build a checkpoint was made with: its preset (by shape, checked against its `hattn.preset`
/// metadata when present) and its variant (by its variant fields, checked against `hattn.variant`).
std::pair<const Preset&, const Variant&> build_of_checkpoint(const fs::path& path) {
  const auto meta = hattn::read_checkpoint_metadata(path);
  const auto cfg_it = meta.find(hattn::config_key);
  check(cfg_it != meta.end(), "'", path.string(), "' has no hattn.config metadata: not a hattn checkpoint");
  const auto c = hattn::parse_checkpoint_config(cfg_it->second, "'" + path.string() + "': ");
  const Preset& p = hattn::cli::preset_for(c.config(), c.vocab_size, c.sequence_length);
  if (const auto it = meta.find(preset_key); it != meta.end())
    check(it->second == p.name, "'", path.string(), "' names preset '", it->second, "' but has the shape of preset '",
          p.name, "'");
  const Variant& v = hattn::cli::variant_for(c.config());
  if (const auto it = meta.find(variant_key); it != meta.end())
    check(it->second == v.name, "'", path.string(), "' names variant '", it->second,
          "' but its configuration is variant '", v.name, "'");
  hattn::cli::require_build(p, v);
  return {p, v};
}

/// "<name> (<fields>)" of a checkpoint's variant, from its hattn.config; "-" without one.
std::string variant_text(const std::map<std::string, std::string>& meta) {
  const auto it = meta.find(hattn::config_key);
  if (it == meta.end()) return "-";
  const hattn::Config c = hattn::parse_checkpoint_config(it->second, "").config();
  const bool seed = hattn::same_variant(c, hattn::Config{});
  return fmt::format("{} ({})", hattn::cli::variant_for(c).name,
                     seed ? "every variant field at its default" : hattn::describe_variant(c));
}

// ---------------------------------------------------------------------------------------------------
// inspect, tokenize

int run_inspect(const std::string& path) {
  const auto file = hattn::io::read_safetensors(path);
  const auto& meta = file.metadata();
  auto get = [&](const char* key) { const auto it = meta.find(key); return it == meta.end() ? std::string("-") : it->second; };
  fmt::print("{}\n", path);
  fmt::print("config:    {}\npreset:    {}\nvariant:   {}\ntokenizer: {}\ntask:      {}\n", get(hattn::config_key),
             get(preset_key), variant_text(meta), get(tokenizer_key),
             meta.count(hattn::cli::task_key) ? get(hattn::cli::task_key) : "text");
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

  hattn::cli::TrainArgs ta;
  auto* train = app.add_subcommand("train", "train a preset on a text file or directory, then sample; or on ListOps");
  train->add_option("--task", ta.task, "text: next-token loss on --data; listops: generated ListOps expressions, "
                    "the answer's loss")->capture_default_str()->check(CLI::IsMember({"text", "listops"}));
  train->add_option("--listops-examples", ta.listops_examples, "held-out ListOps examples (--task listops)")
      ->capture_default_str();
  train->add_option("--preset", ta.preset, "model preset: " + hattn::cli::preset_names())->capture_default_str();
  train->add_option("--variant", ta.variant,
                    "attention variant (SPEC.md \"Variants\"): " + hattn::cli::variant_names() +
                        "; replace is the seed's rule, notebook the seed notebook's non-causal mask")
      ->capture_default_str();
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
  train->add_option("--dropout", ta.dropout, "on or off: dropout (p = 0.1) in training forwards (default: the preset's)")
      ->check(CLI::IsMember({"on", "off"}));
  train->add_flag("--gradient-checkpointing", ta.checkpointing,
                  "recompute the hierarchies' activations, the hidden layers and the logits in backward: less memory, same gradients");

  hattn::cli::GenerateArgs ga;
  auto* gen = app.add_subcommand("generate", "continue a prompt");
  gen->add_option("--checkpoint", ga.checkpoint, "training or model checkpoint")->capture_default_str();
  gen->add_option("--prompt", ga.prompt, "text to continue");
  gen->add_option("--tokens", ga.tokens, "tokens to generate")->capture_default_str();
  gen->add_option("--temperature", ga.temperature, "0: greedy")->capture_default_str();
  gen->add_option("--top-k", ga.top_k, "keep the k most likely tokens (0: all)")->capture_default_str();
  gen->add_option("--top-p", ga.top_p, "nucleus sampling threshold")->capture_default_str();
  gen->add_option("--seed", ga.seed, "sampling seed")->capture_default_str();

  hattn::cli::EvalArgs ea;
  auto* eval = app.add_subcommand("eval", "loss, perplexity and bits per byte of a text file; or ListOps accuracy");
  eval->add_option("--checkpoint", ea.checkpoint, "training or model checkpoint")->capture_default_str();
  eval->add_option("--data", ea.data, "text file or directory (task text)");
  eval->add_option("--task", ea.task, "text or listops (default: the checkpoint's)")
      ->check(CLI::IsMember({"text", "listops"}));
  eval->add_option("--listops-examples", ea.listops_examples, "ListOps examples to score")->capture_default_str();
  eval->add_option("--listops-seed", ea.listops_seed, "their seed (training holds out seed 1)")->capture_default_str();

  std::string inspect_path;
  auto* inspect = app.add_subcommand("inspect", "configuration, preset, parameters and tensors of a checkpoint");
  inspect->add_option("checkpoint", inspect_path, "checkpoint file")->required();

  hattn::cli::AttentionArgs aa;
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
      using Build = std::pair<const Preset&, const Variant&>;
      const Build build = ta.resume.empty() ? Build{hattn::cli::find_preset(ta.preset), hattn::cli::find_variant(ta.variant)}
                                            : build_of_checkpoint(ta.resume);
      const auto& [p, v] = build;
      if (!ta.resume.empty() && train->count("--preset") && p.name != ta.preset)
        throw hattn::Error(fmt::format("'{}' was trained with preset '{}', not '{}'", ta.resume, p.name, ta.preset));
      if (!ta.resume.empty() && train->count("--variant") && v.name != ta.variant)
        throw hattn::Error(fmt::format("'{}' was trained with variant '{}', not '{}'", ta.resume, v.name, ta.variant));
      // --resume continues the checkpoint's task unless --task names another (an error then).
      if (!ta.resume.empty() && !train->count("--task")) ta.task = hattn::cli::checkpoint_task(ta.resume);
      return hattn::cli::with_build(p, v, [&]<hattn::Config C>() { return hattn::cli::Commands<C>::train(p, v, ta, common); });
    }
    // The other model subcommands take the preset and the variant from the checkpoint.
    const auto run = [&](const std::string& checkpoint, auto command) {
      const auto [p, v] = build_of_checkpoint(checkpoint);
      return hattn::cli::with_build(p, v, [&]<hattn::Config C>() { return command.template operator()<C>(p, v); });
    };
    using hattn::cli::Commands;
    if (*gen)
      return run(ga.checkpoint, [&]<hattn::Config C>(const Preset& p, const Variant& v) {
        return Commands<C>::generate(p, v, ga, common);
      });
    if (*eval)
      return run(ea.checkpoint, [&]<hattn::Config C>(const Preset& p, const Variant& v) {
        return Commands<C>::eval(p, v, ea, common);
      });
    if (*attn)
      return run(aa.checkpoint, [&]<hattn::Config C>(const Preset& p, const Variant& v) {
        return Commands<C>::attention(p, v, aa, common);
      });
    if (*inspect) return run_inspect(inspect_path);
    if (*tokenize) return run_tokenize(common);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "hattn: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
