#pragma once
/// \file
/// Hierarchical attention (SPEC.md "Hierarchical attention HA"), the default mixer: causal
/// self-attention inside each of the 2^L leaf chunks, then L tree levels where each right sibling
/// takes the node rule over its left sibling (model/tree.hpp). The levels are unrolled at compile
/// time.

#include <array>
#include <string>
#include <vector>

#include "hattn/config.hpp"
#include "hattn/model/activations.hpp"
#include "hattn/model/attention_maps.hpp"
#include "hattn/model/layers.hpp"
#include "hattn/model/self_attention.hpp"
#include "hattn/model/tree.hpp"
#include "hattn/ops/rows.hpp"

namespace hattn::model {

/// Parameters of one hierarchical attention with L levels.
template <class T, int L>
struct HierParams {
  SelfAttentionParams<T> leaf;        ///< leaf_attention.{self_attention, norm}
  std::array<NodeParams<T>, L> node;  ///< node_layers.{l}.{cross_attention, norm}
};

/// Activations of one hierarchical attention over M = B * Tp rows (each sequence padded to Tp).
/// The leaves' output is relay 0, level l's output relay (l + 1) % 2; the last level's output
/// is the hierarchy's.
template <class T, int L>
struct HierActs {
  Var<T, 2> real;                       ///< seed_compat: (B T, d) the input's real rows
  Var<T, 2> zero_padded;                ///< seed_compat: (B Tp, d) them padded with zero rows
  SelfAttentionActs<T> leaves;          ///< chunks of C = Tp / 2^L rows
  std::array<LevelActs<T>, L> levels;
};

namespace detail {

/// Tree levels [l, end) on `y` (M, d), the output of the level below l (or of the leaves).
template <Config C, class T, int l, int end = C.levels>
Var<T, 2> tree_levels(const HierParams<T, C.levels>& p, HierActs<T, C.levels>& a, Var<T, 2> y,
                      const ForwardContext& ctx) {
  if constexpr (l == end) {
    return y;
  } else {
    const Var<T, 2> out = tree_level<C, T>(p.node[l], a.levels[l], y, ctx);
    return tree_levels<C, T, l + 1, end>(p, a, out, ctx);
  }
}

/// Backward passes of tree levels l, l - 1, ..., 0 of a checkpointed hierarchy whose gathered
/// inputs are in place: each level is recomputed (recorded after the first `keep` records of the
/// tape) and run backward at once, so the levels share one set of values.
template <Config C, class T, int l>
void recompute_levels_backward(const HierParams<T, C.levels>& p, HierActs<T, C.levels>& a,
                               const ForwardContext& ctx, std::size_t keep) {
  if constexpr (l >= 0) {
    const Var<T, 2> input = l == 0 ? a.leaves.out : a.levels[l - 1].out;
    tree_level<C, T>(p.node[l], a.levels[l], input, ctx, /*regathered=*/true);
    ctx.tape->backward_to(keep);
    recompute_levels_backward<C, T, l - 1>(p, a, ctx, keep);
  }
}

}  // namespace detail

/// The hierarchical attention as a mixer (model/mixer.hpp): what a block's two attention slots
/// run by default.
template <Config C, class T>
struct HierarchicalMixer {
  static constexpr int L = C.levels;
  /// Parameters of one slot.
  using Params = HierParams<T, L>;
  /// Activations of one slot.
  using Acts = HierActs<T, L>;

  /// A slot's name inside a block: `hier_attn1`, `hier_attn2`.
  static std::string slot_name(int slot) { return "hier_attn" + std::to_string(slot); }

  /// Rows per sequence inside the blocks: T rounded up to a multiple of 2^levels.
  static constexpr Index padded_length(Index tokens) {
    constexpr Index chunks = Index{1} << L;
    return (tokens + chunks - 1) / chunks * chunks;
  }

  /// Takes and names a slot's parameters under `prefix` (e.g. "decoder_block.hier_attn1").
  static Params make_params(ParameterBuilder<T>& pb, const std::string& prefix) {
    Params h;
    h.leaf = make_self_attention(pb, prefix + ".leaf_attention", C.d_model);
    for (int l = 0; l < L; ++l) h.node[l] = make_node(pb, prefix + ".node_layers." + std::to_string(l), C.d_model);
    return h;
  }

  /// Takes a slot's activations over B sequences of Tp rows. With `checkpoint`, the values a
  /// backward pass reads go to the recompute region: the leaves' values, then every level's
  /// gathered inputs (left, right), then the rest of one level's values, which all levels share
  /// (the checkpoint node recomputes a level just before its backward pass).
  static Acts make_acts(ActivationBuilder<T>& ab, Index B, Index Tp, bool checkpoint) {
    Acts a;
    const Index M = B * Tp, chunk = Tp >> L;
    const Index side_size = ArenaPlan::round_up<T>((M / 2) * C.d_model);  // one (M / 2, d) gathered side
    if constexpr (C.seed_compat) {
      a.real = ab.take(M, C.d_model);  // (B T, d) used of (B Tp, d)
      a.zero_padded = ab.take(M, C.d_model);
    }
    ab.set_recompute(checkpoint);
    a.leaves = make_self_attention_acts(ab, M, chunk, C.d_model, C.heads);
    const Index gathered = ab.recompute_offset(), level_values = gathered + 2 * L * side_size;
    for (int l = 0; l < L; ++l)
      a.levels[l] = make_level_acts<C, T>(ab, l, M, chunk, checkpoint ? gathered + 2 * l * side_size : -1,
                                          checkpoint ? level_values : -1);
    ab.set_recompute(false);
    return a;
  }

  /// Forward pass on x (M, d), every op recorded on ctx.tape: B sequences of Tp rows, Tp a
  /// multiple of 2^L (the caller pads). Returns the output (M, d), a relay whose gradient the
  /// caller clears before its backward adds into it. Padding rows sit at the end of each sequence,
  /// so no real row reads one (but under seed_compat): the leaf mask is causal and every left
  /// sibling precedes its right sibling.
  static Var<T, 2> forward_recorded(const Params& p, Acts& a, Var<T, 2> x, const ForwardContext& ctx) {
    const Var<T, 2> leaves = self_attention_forward(p.leaf, a.leaves, x, ctx, leaf_mask);
    return detail::tree_levels<C, T, 0>(p, a, leaves, ctx);
  }

  /// Tape node of a checkpointed hierarchical attention. Its backward recomputes the hierarchy
  /// level by level on a tape of its own, with the same ops, masks and buffer alignments as
  /// without checkpointing (so the gradients are bitwise the same) and in the same backward
  /// order: the leaves recorded and the levels below the top unrecorded (which gathers every
  /// level's inputs), the top level recorded and run backward; then each lower level recomputed
  /// from its gathered inputs and run backward, all sharing one level's values; last the leaves'
  /// backward.
  struct CheckpointNode {
    const Params* p = nullptr;
    Acts* a = nullptr;
    Var<T, 2> x;         // (M, d) the hierarchy's input, kept by the caller
    ForwardContext ctx;  // as in the forward pass; ctx.recompute is the tape to recompute on
    void backward() const {
      Tape& tape = *ctx.recompute;
      tape.clear();
      ForwardContext recorded = ctx;
      recorded.tape = &tape;
      recorded.recompute = nullptr;
      ForwardContext plain = recorded;
      plain.tape = nullptr;
      const Var<T, 2> leaves = self_attention_forward(p->leaf, a->leaves, x, recorded, leaf_mask);
      const std::size_t keep = tape.size();
      const Var<T, 2> below_top = detail::tree_levels<C, T, 0, L - 1>(*p, *a, leaves, plain);
      tree_level<C, T>(p->node[L - 1], a->levels[L - 1], below_top, recorded);
      tape.backward_to(keep);
      detail::recompute_levels_backward<C, T, L - 2>(*p, *a, recorded, keep);
      tape.backward();
      tape.clear();
    }
  };

  /// Forward pass (see forward_recorded). When ctx.recompute is set (gradient checkpointing, with
  /// activations laid out by make_acts(..., true)), it runs without recording and records one
  /// CheckpointNode instead.
  static Var<T, 2> forward(const Params& p, Acts& a, Var<T, 2> x, const ForwardContext& ctx) {
    if constexpr (C.seed_compat) x = zero_padding(a, x, ctx);
    if (!ctx.tape || !ctx.recompute) return forward_recorded(p, a, x, ctx);
    ForwardContext plain = ctx;
    plain.tape = nullptr;
    const Var<T, 2> y = forward_recorded(p, a, x, plain);
    ctx.tape->record(CheckpointNode{&p, &a, x, ctx});
    return y;
  }

  /// The head-averaged attention maps of a slot's last inference pass, for sequence 0 (T real
  /// rows, Tp padded): `<prefix>.leaf` and `<prefix>.level<l>`, each (T, T); a pooled level's map
  /// is at summary resolution (a summary's weight on every row it pools).
  static void maps(const Acts& a, const std::string& prefix, Index T_, Index Tp,
                   std::vector<AttentionMap<T>>& out) {
    constexpr Index d = C.d_model;
    const Index chunk = Tp >> L;
    {
      const Index R = a.leaves.rows;
      Rows<const T> qs = blocks(a.leaves.qkv, R, 0, d).value, ks = blocks(a.leaves.qkv, R, d, d).value;
      qs.groups = ks.groups = Index{1} << L;  // sequence 0's chunks come first
      out.push_back({prefix + ".leaf",
                     detail::attention_map<T>(T_, qs, ks, View<const T, 3>(a.leaves.lse), C.heads, leaf_mask,
                                              [&](Index g) { return g * chunk; },
                                              [&](Index g, Index j) { return std::pair{g * chunk + j, g * chunk + j + 1}; })});
    }
    for (int l = 0; l < L; ++l) {
      const LevelActs<T>& v = a.levels[l];
      const Index S = v.S, K = v.K, pairs = Tp / (2 * S);  // sequence 0's pairs come first
      Rows<const T> qs = blocks(v.q, S, 0, d).value, ks = blocks(v.kv, K, 0, d).value;
      qs.groups = ks.groups = pairs;
      out.push_back({prefix + ".level" + std::to_string(l),
                     detail::attention_map<T>(T_, qs, ks, View<const T, 3>(v.lse), C.heads, level_mask<C>(S),
                                              [&](Index p) { return p * 2 * S + S; },
                                              [&](Index p, Index j) {
                                                return std::pair{p * 2 * S + ops::pool_start(j, S, K),
                                                                 p * 2 * S + ops::pool_start(j + 1, S, K)};
                                              })});
    }
  }

 private:
  /// pad(x[:T]), the input SPEC.md gives a hierarchy: under seed_compat real rows read padding
  /// rows, which must then be zeros (elsewhere the blocks keep the padded layout, whose padding
  /// rows no real row reads). The input itself when there is no padding.
  static Var<T, 2> zero_padding(Acts& a, Var<T, 2> x, const ForwardContext& ctx) {
    constexpr Index d = C.d_model;
    const Index T_ = ctx.tokens, Tp = padded_length(T_), B = x.value.dim(0) / Tp;
    if (T_ == Tp) return x;
    const auto as3 = [&](Var<T, 2> v, Index rows) {
      return Var<T, 3>{View<T, 3>(v.value.data, B, rows, d),
                       v.grad.present() ? View<T, 3>(v.grad.data, B, rows, d) : View<T, 3>()};
    };
    const Var<T, 3> real = as3(a.real, T_), padded = as3(a.zero_padded, Tp);
    ops::slice_rows<T>(ctx.tape, real, as3(x, Tp));
    ops::pad_rows<T>(ctx.tape, padded, real);
    return a.zero_padded;
  }

  static constexpr ops::Mask leaf_mask = C.seed_compat ? ops::Mask::notebook : ops::Mask::causal;
};

}  // namespace hattn::model
