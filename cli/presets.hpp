#pragma once
// The model variants the command-line tool is compiled with, and dispatch from a name to the
// compile-time type. To add a preset: add an entry to `presets` and a branch to `with_preset`.

#include <array>
#include <string>
#include <string_view>

#include "hattn/config.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::cli {

/// A named model variant with its training defaults.
struct Preset {
  std::string_view name;
  Config config;               ///< compile-time shape
  Index vocab_size;            ///< 256 for the byte tokenizer, 50257 for GPT-2 BPE
  Index sequence_length;       ///< S
  std::string_view tokenizer;  ///< "byte" or "gpt2"
  Index batch;                 ///< sequences per step
  double lr;                   ///< peak learning rate
  std::string_view about;      ///< one line for --help and inspect
};

inline constexpr Config tiny_config{.levels = 3, .heads = 4, .d_model = 64};
inline constexpr Config small_config{.levels = 4, .heads = 4, .d_model = 128};
inline constexpr Config seed_config{.levels = 5, .heads = 12, .d_model = 768};

/// Every compiled preset.
inline constexpr std::array<Preset, 3> presets{{
    {"tiny", tiny_config, 256, 256, "byte", 8, 2e-3, "bytes, d 64, 4 heads, 3 levels, 256 tokens: trains in minutes on 2 cores"},
    {"small", small_config, 256, 512, "byte", 8, 1e-3, "bytes, d 128, 4 heads, 4 levels, 512 tokens"},
    {"seed", seed_config, 50257, 512, "gpt2", 8, 3e-4, "GPT-2 BPE, d 768, 12 heads, 5 levels, 512 tokens: the notebook's recipe"},
}};

/// "tiny, small, seed".
inline std::string preset_names() {
  std::string s;
  for (const auto& p : presets) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

/// The preset called `name`; throws hattn::Error naming the compiled ones.
inline const Preset& find_preset(std::string_view name) {
  for (const auto& p : presets)
    if (p.name == name) return p;
  throw Error(detail::concat("unknown preset '", name, "': this build has ", preset_names(),
                             " (add one to cli/presets.hpp and rebuild)"));
}

/// The preset whose configuration, vocabulary and length match a checkpoint's; throws hattn::Error
/// saying how to add one when none does.
inline const Preset& preset_for(const Config& c, Index vocab, Index seq) {
  for (const auto& p : presets)
    if (p.config.levels == c.levels && p.config.heads == c.heads && p.config.d_model == c.d_model &&
        p.config.blocks == c.blocks && p.config.node_mask == c.node_mask && p.vocab_size == vocab &&
        p.sequence_length == seq)
      return p;
  throw Error(detail::concat("no compiled preset has this checkpoint's shape (levels ", c.levels, ", heads ",
                             c.heads, ", d_model ", c.d_model, ", blocks ", c.blocks, ", vocab ", vocab,
                             ", sequence ", seq, "): add it to cli/presets.hpp (the presets array and "
                             "with_preset) and rebuild"));
}

/// Calls `f.template operator()<C>(preset)` with the compile-time configuration of `preset`.
template <class F>
decltype(auto) with_preset(const Preset& preset, F&& f) {
  if (preset.name == "tiny") return f.template operator()<tiny_config>(preset);
  if (preset.name == "small") return f.template operator()<small_config>(preset);
  if (preset.name == "seed") return f.template operator()<seed_config>(preset);
  throw Error(detail::concat("preset '", preset.name, "' is listed but has no branch in with_preset"));
}

}  // namespace hattn::cli
