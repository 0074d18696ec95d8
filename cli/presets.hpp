#pragma once
// The models the command-line tool is compiled with: presets (a width and its training defaults)
// times variants (SPEC.md "Variants"), and dispatch from their names to the compile-time type. To
// add a preset: an entry in `presets`, its builds in `builds`, and a cli/builds_<preset>.cpp that
// instantiates them. To add a variant: an entry in `variants` and its builds.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "hattn/config.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::cli {

/// A named model width with its training defaults.
struct Preset {
  std::string_view name;
  Config config;               ///< compile-time shape (the variant fields at their defaults)
  Index vocab_size;            ///< 256 for the byte tokenizer, 50257 for GPT-2 BPE
  Index sequence_length;       ///< S
  std::string_view tokenizer;  ///< "byte" or "gpt2"
  Index batch;                 ///< sequences per step
  double lr;                   ///< peak learning rate
  bool dropout;                ///< dropout (p = 0.1) in training forwards
  std::int64_t steps;          ///< optimizer steps when --steps is not given
  std::string_view about;      ///< one line for --help and inspect
};

inline constexpr Config tiny_config{.levels = 3, .heads = 4, .d_model = 64};
inline constexpr Config small_config{.levels = 4, .heads = 4, .d_model = 128};
inline constexpr Config seed_config{.levels = 5, .heads = 12, .d_model = 768};

/// Every compiled preset. tiny's defaults are the main job's: about 2.5 to 4 minutes on 2 cores
/// (docs/usage.md, docs/variants.md "The main job").
inline constexpr std::array<Preset, 3> presets{{
    {"tiny", tiny_config, 256, 256, "byte", 8, 5e-3, false, 8750, "bytes, d 64, 4 heads, 3 levels, 256 tokens: trains in minutes on 2 cores"},
    {"small", small_config, 256, 512, "byte", 8, 1e-3, true, 3000, "bytes, d 128, 4 heads, 4 levels, 512 tokens"},
    {"seed", seed_config, 50257, 512, "gpt2", 8, 3e-4, true, 20000, "GPT-2 BPE, d 768, 12 heads, 5 levels, 512 tokens: the notebook's recipe"},
}};

/// A named variant: the values it gives Config's variant fields (SPEC.md "Variants").
struct Variant {
  std::string_view name;
  NodeCombine node_combine;
  int summaries;
  Mixer mixer;
  bool seed_compat;
  int blocks;              ///< decoder blocks; 0: the preset's
  std::string_view about;  ///< one line for --help and the training banner
};

/// Every variant the tool offers. `pooled` is the residual rule with 16 summaries: at the tiny and
/// small presets (leaf chunks of 32 rows) every tree level pools, so the tree costs O(T (C + 16 L)).
/// `dense3` is the dense baseline with 3 blocks, matched to the hierarchical variants' parameter
/// count: a hierarchical slot has levels + 1 attentions where a dense one has 1, so a hierarchical
/// block of levels L holds as many weights as about 1 + 2 L / 3 dense blocks (3 at the small
/// preset's L = 4: 795,520 against 795,264 per block; at tiny's L = 3, 2.5, so dense3 has 17% more).
inline constexpr std::array<Variant, 6> variants{{
    {"replace", NodeCombine::replace, 0, Mixer::hierarchical, false, 0,
     "the seed's rule: each right sibling is replaced by its cross-attention over the left"},
    {"residual", NodeCombine::residual, 0, Mixer::hierarchical, false, 0,
     "each right sibling keeps its rows and adds its cross-attention over the left"},
    {"pooled", NodeCombine::residual, 16, Mixer::hierarchical, false, 0,
     "residual, with keys from 16 mean-pooled summaries of each left sibling: sub-quadratic"},
    {"dense", NodeCombine::replace, 0, Mixer::dense, false, 0,
     "causal full attention over the whole sequence: the baseline"},
    {"dense3", NodeCombine::replace, 0, Mixer::dense, false, 3,
     "the dense baseline with 3 blocks: about the hierarchical variants' parameter count"},
    {"notebook", NodeCombine::replace, 0, Mixer::hierarchical, true, 0,
     "the seed notebook's -1e9 * tril mask (seed_compat), for checkpoints trained with it: NOT causal"},
}};

/// A preset compiled with a variant.
struct Build {
  std::string_view preset, variant;
};

/// Every compiled (preset, variant): every variant at the tiny and small widths; at the seed's,
/// the seed's rule and the notebook's mask (for checkpoints trained with the notebook). Configured
/// with HATTN_CLI_ALL_BUILDS=OFF (the sanitizer builds), preset tiny with the default variant only.
#ifndef HATTN_CLI_TINY_ONLY
inline constexpr std::array<Build, 14> builds{{
    {"tiny", "replace"}, {"tiny", "residual"}, {"tiny", "pooled"}, {"tiny", "dense"}, {"tiny", "dense3"},
    {"tiny", "notebook"},
    {"small", "replace"}, {"small", "residual"}, {"small", "pooled"}, {"small", "dense"}, {"small", "dense3"},
    {"small", "notebook"},
    {"seed", "replace"}, {"seed", "notebook"},
}};
#else
inline constexpr std::array<Build, 1> builds{{{"tiny", "pooled"}}};
#endif

/// The names of a table's entries, comma-separated.
template <class Table>
std::string names_of(const Table& table) {
  std::string s;
  for (const auto& e : table) s += (s.empty() ? "" : ", ") + std::string(e.name);
  return s;
}

/// "tiny, small, seed".
inline std::string preset_names() { return names_of(presets); }
/// "replace, residual, pooled, dense, dense3, notebook".
inline std::string variant_names() { return names_of(variants); }

/// The preset called `name`; throws hattn::Error naming the compiled ones.
inline const Preset& find_preset(std::string_view name) {
  for (const auto& p : presets)
    if (p.name == name) return p;
  throw Error(detail::concat("unknown preset '", name, "': this build has ", preset_names(),
                             " (add one to cli/presets.hpp and rebuild)"));
}

/// The variant called `name`; throws hattn::Error naming the offered ones.
inline const Variant& find_variant(std::string_view name) {
  for (const auto& v : variants)
    if (v.name == name) return v;
  throw Error(detail::concat("unknown variant '", name, "': the variants are ", variant_names()));
}

/// `preset`'s configuration with `variant`'s fields (and its blocks, when it sets them).
constexpr Config with_variant(Config c, const Variant& v) {
  c.node_combine = v.node_combine;
  c.summaries = v.summaries;
  c.mixer = v.mixer;
  c.seed_compat = v.seed_compat;
  if (v.blocks > 0) c.blocks = v.blocks;
  return c;
}

/// The compile-time configuration of (preset, variant), both named in the tables above.
consteval Config build_config(std::string_view preset, std::string_view variant) {
  Config c{};
  for (const auto& p : presets)
    if (p.name == preset) c = p.config;
  for (const auto& v : variants)
    if (v.name == variant) c = with_variant(c, v);
  return c;
}

/// Throws hattn::Error unless (preset, variant) is compiled.
inline void require_build(const Preset& p, const Variant& v) {
  for (const auto& b : builds)
    if (b.preset == p.name && b.variant == v.name) return;
  std::string with;
  for (const auto& b : builds)
    if (b.preset == p.name) with += (with.empty() ? "" : ", ") + std::string(b.variant);
  throw Error(detail::concat("preset '", p.name, "' is compiled with the variants ", with, ", not '", v.name,
                             "' (add the build to cli/presets.hpp and cli/builds_", p.name, ".cpp)"));
}

/// The variant whose fields match `c`'s, preferring one that sets the blocks to `c`'s; nullptr
/// when none does.
inline const Variant* matching_variant(const Config& c) {
  const Variant* found = nullptr;
  for (const auto& v : variants)
    if (same_variant(with_variant(c, v), c) && (v.blocks == 0 || v.blocks == c.blocks) && (!found || v.blocks > 0))
      found = &v;
  return found;
}

/// The variant of a checkpoint's configuration (matching_variant); throws hattn::Error when none
/// matches.
inline const Variant& variant_for(const Config& c) {
  if (const Variant* v = matching_variant(c)) return *v;
  throw Error(detail::concat("no variant of the tool has this checkpoint's variant fields (node_combine ",
                             value_name(c.node_combine), ", summaries ", c.summaries, ", mixer ", value_name(c.mixer),
                             ", seed_compat ", c.seed_compat ? "true" : "false", "): the variants are ",
                             variant_names()));
}

/// The preset whose shape (every field but the variant's, the blocks as the variant sets them),
/// vocabulary and length match a checkpoint's; throws hattn::Error saying how to add one when none
/// does.
inline const Preset& preset_for(const Config& c, Index vocab, Index seq) {
  const Variant& seed_rule = variants[0];  // every variant field at its default, the preset's blocks
  const Variant* v = matching_variant(c);
  const Config shape = with_variant(c, seed_rule);
  for (const auto& p : presets)
    if (with_variant(with_variant(p.config, v ? *v : seed_rule), seed_rule) == shape && p.vocab_size == vocab &&
        p.sequence_length == seq)
      return p;
  throw Error(detail::concat("no compiled preset has this checkpoint's shape (levels ", c.levels, ", heads ",
                             c.heads, ", d_model ", c.d_model, ", blocks ", c.blocks, ", vocab ", vocab,
                             ", sequence ", seq, "): add it to cli/presets.hpp and rebuild"));
}

namespace dispatch {

template <class F, std::size_t... I>
decltype(auto) with_build(const Preset& p, const Variant& v, F&& f, std::index_sequence<I...>) {
  using R = decltype(f.template operator()<build_config(builds[0].preset, builds[0].variant)>());
  R result{};
  const bool found = ((builds[I].preset == p.name && builds[I].variant == v.name
                           ? (result = f.template operator()<build_config(builds[I].preset, builds[I].variant)>(), true)
                           : false) ||
                      ...);
  if (!found) require_build(p, v);
  return result;
}

}  // namespace dispatch

/// Calls `f.template operator()<C>()` with the compile-time configuration of (preset, variant);
/// throws hattn::Error (require_build()) when that pair is not compiled.
template <class F>
decltype(auto) with_build(const Preset& p, const Variant& v, F&& f) {
  return dispatch::with_build(p, v, std::forward<F>(f), std::make_index_sequence<builds.size()>{});
}

}  // namespace hattn::cli
