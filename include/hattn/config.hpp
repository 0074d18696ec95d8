#pragma once
/// \file
/// The compile-time shape of a model: hattn::Config and its policies.

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
