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

/// A model variant, fixed at compile time: `hattn::Decoder<Config{...}>`.
struct Config {
  int levels = 1;                         ///< L: tree levels; the sequence splits into 2^L leaf chunks
  int heads = 1;                          ///< h: attention heads
  int d_model = 2;                        ///< d: model width; d % h == 0 and d even
  int blocks = 1;                         ///< decoder blocks stacked (the seed has one)
  NodeMask node_mask = NodeMask::aligned; ///< tree cross-attention mask policy

  /// Width of one head, d / h.
  constexpr int head_dim() const { return d_model / heads; }
  /// Leaf chunks, 2^L.
  constexpr int chunks() const { return 1 << levels; }
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
  static constexpr bool value = true;
};

}  // namespace hattn
