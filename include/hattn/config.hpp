#pragma once
/// \file
/// The compile-time shape of a model: hattn::Config and its policies, and the table of its fields
/// that checkpoints, their parser and the tool read.

#include <array>
#include <cstdint>
#include <limits>
#include <string_view>

namespace hattn {

/// Which left-sibling rows a right-sibling row sees in the tree's cross-attention (SPEC.md).
/// Both are causal: every left row precedes every right row.
enum class NodeMask {
  aligned,  ///< right row i sees left rows j <= i (the default, the seed's intent)
  full,     ///< right row i sees every left row
};

/// What a tree level makes of a right sibling (SPEC.md "Variants").
enum class NodeCombine {
  replace,   ///< Dropout(LN(MHA(q = right, kv = left))): the seed's rule
  residual,  ///< Dropout(LN(right + MHA(q = right, kv = left))): the row keeps its own context
};

/// What fills a block's two attention slots (SPEC.md "Variants").
enum class Mixer {
  hierarchical,  ///< the hierarchical attention: leaf chunks and a binary tree (the seed)
  dense,         ///< causal full attention over the whole sequence: the baseline
};

/// A model variant, fixed at compile time: `hattn::Decoder<Config{...}>`. The defaults are the
/// seed's model; SPEC.md "Variants" defines the other values.
struct Config {
  int levels = 1;                         ///< L: tree levels; the sequence splits into 2^L leaf chunks
  int heads = 1;                          ///< h: attention heads
  int d_model = 2;                        ///< d: model width; d % h == 0 and d even
  int blocks = 1;                         ///< decoder blocks stacked (the seed has one)
  NodeMask node_mask = NodeMask::aligned; ///< tree cross-attention mask policy
  NodeCombine node_combine = NodeCombine::replace;  ///< what a tree level makes of a right sibling
  int summaries = 0;                      ///< 0: keys from every left row; k >= 1: from k mean-pooled
                                          ///< summaries of each left sibling longer than k rows
  Mixer mixer = Mixer::hierarchical;      ///< the attention in a block's two slots
  bool seed_compat = false;               ///< the notebook's non-causal -1e9 * tril arithmetic (float)

  /// Width of one head, d / h.
  constexpr int head_dim() const { return d_model / heads; }
  /// Leaf chunks, 2^L.
  constexpr int chunks() const { return 1 << levels; }
  /// Whether row t's outputs depend only on rows <= t (every variant but seed_compat).
  constexpr bool causal() const { return !seed_compat; }

  /// Field by field.
  friend constexpr bool operator==(const Config&, const Config&) = default;
};

/// How checkpoints and the tool spell each value of an enum field, in enumerator order.
constexpr std::array<std::string_view, 2> value_names(NodeMask) { return {"aligned", "full"}; }
/// As above, for the node rule.
constexpr std::array<std::string_view, 2> value_names(NodeCombine) { return {"replace", "residual"}; }
/// As above, for the mixer.
constexpr std::array<std::string_view, 2> value_names(Mixer) { return {"hierarchical", "dense"}; }
/// The spelling of enum value `v`.
template <class E>
constexpr std::string_view value_name(E v) {
  return value_names(v)[static_cast<std::size_t>(v)];
}

/// One field of Config: how checkpoints and the tool name it, the member, and for integers the
/// range a checkpoint may hold (wider than CheckConfig's where runtime checks take over).
template <class V>
struct ConfigField {
  std::string_view name;       ///< e.g. "levels"
  V Config::*member;           ///< the member
  std::int64_t lo = 0, hi = 0; ///< integers: the range a checkpoint's value must lie in
  bool variant = false;        ///< a variant field (SPEC.md "Variants"): checkpoints written before
                               ///< the variants lack it, and it reads as its default there
};

/// Calls `f(field)` for every field of Config, in declaration order: the one list of the fields
/// that checkpoint metadata, its parser, configuration comparisons and the tool are written over.
template <class F>
constexpr void for_each_config_field(F&& f) {
  constexpr std::int64_t int_max = std::numeric_limits<std::int32_t>::max();
  f(ConfigField<int>{"levels", &Config::levels, 1, 30});
  f(ConfigField<int>{"heads", &Config::heads, 1, int_max});
  f(ConfigField<int>{"d_model", &Config::d_model, 1, int_max});
  f(ConfigField<int>{"blocks", &Config::blocks, 1, int_max});
  f(ConfigField<NodeMask>{"node_mask", &Config::node_mask});
  f(ConfigField<NodeCombine>{"node_combine", &Config::node_combine, 0, 0, true});
  f(ConfigField<int>{"summaries", &Config::summaries, 0, int_max, true});
  f(ConfigField<Mixer>{"mixer", &Config::mixer, 0, 0, true});
  f(ConfigField<bool>{"seed_compat", &Config::seed_compat, 0, 0, true});
}

/// Whether `a` and `b` differ in a variant field (SPEC.md "Variants").
constexpr bool same_variant(const Config& a, const Config& b) {
  bool same = true;
  for_each_config_field([&](auto field) {
    if (field.variant) same = same && a.*field.member == b.*field.member;
  });
  return same;
}

/// Rejects invalid configurations at compile time with a message naming the parameter.
template <Config C>
struct CheckConfig {
  static_assert(C.levels >= 1, "hattn::Config: levels must be >= 1");
  static_assert(C.levels <= 30, "hattn::Config: levels must be <= 30 (2^levels chunks)");
  static_assert(C.heads >= 1, "hattn::Config: heads must be >= 1");
  static_assert(C.heads < 1 || C.d_model % C.heads == 0,
                "hattn::Config: d_model must be divisible by heads");
  static_assert(C.d_model % 2 == 0,
                "hattn::Config: d_model must be even (the sinusoid table fills pairs of columns)");
  static_assert(C.d_model >= 2, "hattn::Config: d_model must be >= 2");
  static_assert(C.blocks >= 1, "hattn::Config: blocks must be >= 1");
  static_assert(C.summaries >= 0, "hattn::Config: summaries must be >= 0 (0: keys from every left row)");
  static_assert(C.mixer != Mixer::dense ||
                    (C.node_mask == NodeMask::aligned && C.node_combine == NodeCombine::replace &&
                     C.summaries == 0),
                "hattn::Config: mixer = dense has no tree: node_mask, node_combine and summaries must "
                "keep their defaults");
  static_assert(!C.seed_compat ||
                    (C.node_mask == NodeMask::aligned && C.node_combine == NodeCombine::replace &&
                     C.summaries == 0 && C.mixer == Mixer::hierarchical),
                "hattn::Config: seed_compat reproduces the seed notebook only: node_mask, node_combine, "
                "summaries and mixer must keep their defaults");
  static constexpr bool value = true;
};

}  // namespace hattn
