#pragma once
/// \file
/// FROZEN: include/hattn/model/hierarchy.hpp as of commit 314ec1c, moved to namespace hattn::frozen (never edit;
/// tests/model/test_frozen_model.cpp compares today's model layer with it, bitwise).
///
/// Hierarchical attention (SPEC.md "Hierarchical attention HA"): causal self-attention inside each
/// of the 2^L leaf chunks, then L tree levels where each right sibling is replaced by its
/// cross-attention over the left sibling. The levels are unrolled at compile time.

#include <array>
#include <string>

#include "hattn/config.hpp"
#include "support/frozen/activations.hpp"
#include "support/frozen/layers.hpp"
#include "hattn/ops/attention.hpp"
#include "hattn/ops/copy_rows.hpp"
#include "hattn/ops/layernorm.hpp"
#include "hattn/ops/linear.hpp"

namespace hattn::frozen::model {

/// Parameters of one hierarchical attention with L levels.
template <class T, int L>
struct HierParams {
  MhaParams<T> leaf;                  ///< leaf_attention.self_attention
  NormParams<T> leaf_norm;            ///< leaf_attention.norm
  std::array<MhaParams<T>, L> node;   ///< node_layers.{l}.cross_attention
  std::array<NormParams<T>, L> norm;  ///< node_layers.{l}.norm
};

/// Takes and names the parameters of a hierarchical attention under `prefix`.
template <class T, int L>
HierParams<T, L> make_hier(ParameterBuilder<T>& pb, const std::string& prefix, Index d) {
  HierParams<T, L> h;
  h.leaf = make_mha(pb, prefix + ".leaf_attention.self_attention", d);
  h.leaf_norm = make_norm(pb, prefix + ".leaf_attention.norm", d);
  for (int l = 0; l < L; ++l) {
    const std::string node = prefix + ".node_layers." + std::to_string(l);
    h.node[l] = make_mha(pb, node + ".cross_attention", d);
    h.norm[l] = make_norm(pb, node + ".norm", d);
  }
  return h;
}

/// Activations of one tree level over M padded rows (Mh = M / 2 rows per side, P sibling pairs
/// of S rows each). Gradients other than the output's live in the level's span.
template <class T>
struct LevelActs {
  Var<T, 2> left, right;    ///< (Mh, d) the pairs' left and right halves, gathered
  Var<T, 2> q;              ///< (Mh, d) queries from the right halves
  Var<T, 2> kv;             ///< (Mh, 2d) keys | values from the left halves
  Var<T, 2> att;            ///< (Mh, d) attention output, heads side by side
  View<T, 3> lse;           ///< (P, h, S) log-sum-exp of each score row
  Var<T, 2> proj;           ///< (Mh, d) output projection
  Var<T, 2> norm;           ///< (Mh, d) LayerNorm output (dropout applies in place); transient
  View<T, 1> mean, rstd;    ///< (Mh) LayerNorm statistics
  View<T, 2> dropped_grad;  ///< (Mh, d) gradient of the dropout output
  Var<T, 2> out;            ///< (M, d) [left ; new right] per pair: the level's output (a relay)
  View<T, 1> span;          ///< every gradient above but out's, flat: cleared before the backward
};

/// Activations of one hierarchical attention over M = B * Tp rows (each sequence padded to Tp).
/// The leaves' output is relay 0, level l's output relay (l + 1) % 2; the last level's output
/// is the hierarchy's.
template <class T, int L>
struct HierActs {
  Var<T, 2> qkv;                     ///< (M, 3d) leaf queries | keys | values, M = B * Tp
  Var<T, 2> att;                     ///< (M, d) leaf attention output
  View<T, 3> lse;                    ///< (B * 2^L, h, C) leaf log-sum-exps
  Var<T, 2> proj;                    ///< (M, d)
  View<T, 2> norm_grad;              ///< (M, d) gradient of the LayerNorm output under dropout
  View<T, 1> mean, rstd;             ///< (M)
  Var<T, 2> out;                     ///< (M, d) the leaves' output: LayerNorm, dropout in place
  View<T, 1> span;                   ///< the leaf gradients but out's, flat
  std::array<LevelActs<T>, L> levels;
};

/// Takes the activations of a hierarchical attention over B sequences of Tp rows. With
/// `checkpoint`, the values a backward pass reads go to the recompute region: the leaves' values,
/// then every level's gathered inputs (left, right), then the rest of one level's values, which
/// all levels share (HierCheckpointNode recomputes a level just before its backward pass).
template <class T, int L>
HierActs<T, L> make_hier_acts(ActivationBuilder<T>& ab, Index B, Index Tp, Index d, Index heads,
                              bool checkpoint = false) {
  HierActs<T, L> a;
  const Index M = B * Tp, C = Tp >> L;
  const Index side_size = ArenaPlan::round_up<T>((M / 2) * d);  // one (M / 2, d) gathered side
  ab.set_recompute(checkpoint);
  ab.begin_span();
  a.qkv = ab.local(M, 3 * d);
  a.att = ab.local(M, d);
  a.lse = ab.stat(B << L, heads, C);
  a.proj = ab.local(M, d);
  a.norm_grad = ab.span_grad(M, d);
  a.mean = ab.stat(M);
  a.rstd = ab.stat(M);
  a.span = ab.span_grads();
  a.out = ab.relay(0, M, d);
  const Index gathered = ab.recompute_offset(), level_values = gathered + 2 * L * side_size;
  for (int l = 0; l < L; ++l) {
    LevelActs<T>& v = a.levels[l];
    const Index Mh = M / 2, S = C << l, P = M / (2 * S);
    ab.begin_span();
    if (checkpoint) ab.set_recompute_offset(gathered + 2 * l * side_size);
    v.left = ab.local(Mh, d);
    v.right = ab.local(Mh, d);
    if (checkpoint) ab.set_recompute_offset(level_values);
    v.q = ab.local(Mh, d);
    v.kv = ab.local(Mh, 2 * d);
    v.att = ab.local(Mh, d);
    v.lse = ab.stat(P, heads, S);
    v.proj = ab.local(Mh, d);
    v.norm = ab.transient(Mh, d);
    v.mean = ab.stat(Mh);
    v.rstd = ab.stat(Mh);
    v.dropped_grad = ab.span_grad(Mh, d);
    v.span = ab.span_grads();
    v.out = ab.relay((l + 1) % 2, M, d);
  }
  ab.set_recompute(false);
  return a;
}

namespace detail {

/// One side (0 left, 1 right) of the sibling pairs of S rows in a (M, d) Var: P blocks of S rows
/// every 2S rows.
template <class T>
RowsVar<T> side(Var<T, 2> x, Index S, int which) {
  const Index d = x.value.dim(1), pairs = x.value.dim(0) / (2 * S);
  auto make = [&](View<T, 2> v) {
    return v.present() ? Rows<T>{v.data + which * S * d, pairs, S, d, d, 2 * S * d} : Rows<T>{};
  };
  return {make(x.value), make(x.grad)};
}

/// Tree level `l` on `y` (M, d), the previous level's output: gathers the pairs' halves, lets each
/// right half cross-attend to its left half, and writes [left ; new right] to the level's output.
/// `regathered`: the halves are already gathered (a checkpointed hierarchy recomputing the level
/// for its backward pass): the copies are recorded but not run, and the output is not written.
template <class T, int L, NodeMask NM, int l>
Var<T, 2> tree_level(const HierParams<T, L>& p, HierActs<T, L>& a, Var<T, 2> y, Index C,
                     const ForwardContext& ctx, std::uint64_t site, bool regathered = false) {
  LevelActs<T>& v = a.levels[l];
  const MhaParams<T>& m = p.node[l];
  const Index d = y.value.dim(1), S = C << l;
  constexpr ops::Mask mask = NM == NodeMask::aligned ? ops::Mask::causal : ops::Mask::none;
  // Copies whose values are already in place are only recorded, for their backward passes.
  const auto copy = [&](RowsVar<T> dst, RowsVar<T> src) {
    regathered ? ops::record_copy_rows<T>(ctx.tape, dst, src) : ops::copy_rows<T>(ctx.tape, dst, src);
  };

  // Gather the pairs' halves so each projection is one GEMM over all pairs.
  copy(blocks(v.left, S, 0, d), side(y, S, 0));
  copy(blocks(v.right, S, 0, d), side(y, S, 1));
  project(ctx.tape, v.q, v.right, row_slice(m.wqkv, 0, d), slice(m.bqkv, 0, d), -1, d);
  project(ctx.tape, v.kv, v.left, row_slice(m.wqkv, d, 2 * d), slice(m.bqkv, d, 2 * d), 0, d);
  ops::attention<T>(ctx.tape, blocks(v.att, S, 0, d), blocks(v.q, S, 0, d), blocks(v.kv, S, 0, d),
                    blocks(v.kv, S, d, d), v.lse, ctx.heads, mask);
  ops::linear<T>(ctx.tape, v.proj, v.att, m.wo, m.bo);
  ops::layernorm<T>(ctx.tape, v.norm, v.mean, v.rstd, v.proj, p.norm[l].w, p.norm[l].b);
  const Var<T, 2> right = maybe_dropout(ctx, v.norm, v.dropped_grad, site + 1 + l);

  // [left ; new right]: the left half passes through unchanged.
  copy(side(v.out, S, 0), side(y, S, 0));
  copy(side(v.out, S, 1), blocks(right, S, 0, d));
  // Backward clears the level's span and its input's gradient (a relay only this level adds
  // into) before running the ops above.
  clear_on_backward(ctx.tape, v.span);
  clear_on_backward(ctx.tape, y.grad);
  return v.out;
}

/// Tree levels [l, end) on `y` (M, d), the output of the level below l (or of the leaves).
template <class T, int L, NodeMask NM, int l, int end = L>
Var<T, 2> tree_levels(const HierParams<T, L>& p, HierActs<T, L>& a, Var<T, 2> y, Index C,
                      const ForwardContext& ctx, std::uint64_t site) {
  if constexpr (l == end) {
    return y;
  } else {
    const Var<T, 2> out = tree_level<T, L, NM, l>(p, a, y, C, ctx, site);
    return tree_levels<T, L, NM, l + 1, end>(p, a, out, C, ctx, site);
  }
}

/// The input of tree level `l`: the leaves' output or level l - 1's.
template <class T, int L>
Var<T, 2> level_input(HierActs<T, L>& a, int l) {
  return l == 0 ? a.out : a.levels[l - 1].out;
}

/// Backward passes of tree levels l, l - 1, ..., 0 of a checkpointed hierarchy whose gathered
/// inputs are in place: each level is recomputed (recorded after the first `keep` records of the
/// tape) and run backward at once, so the levels share one set of values.
template <class T, int L, NodeMask NM, int l>
void recompute_levels_backward(const HierParams<T, L>& p, HierActs<T, L>& a, Index C,
                               const ForwardContext& ctx, std::uint64_t site, std::size_t keep) {
  if constexpr (l >= 0) {
    tree_level<T, L, NM, l>(p, a, level_input(a, l), C, ctx, site, /*regathered=*/true);
    ctx.tape->backward_to(keep);
    recompute_levels_backward<T, L, NM, l - 1>(p, a, C, ctx, site, keep);
  }
}

}  // namespace detail

/// The leaves of one hierarchical attention on x (M, d) (see hier_forward_recorded); returns
/// their output (M, d), relay 0.
template <class T, int L>
Var<T, 2> leaves_forward(const HierParams<T, L>& p, HierActs<T, L>& a, Var<T, 2> x, Index Tp,
                         const ForwardContext& ctx, std::uint64_t site) {
  const Index d = x.value.dim(1), C = Tp >> L;
  // One fused Q|K|V GEMM over every row, causal attention inside each chunk of C rows.
  project(ctx.tape, a.qkv, x, p.leaf.wqkv, p.leaf.bqkv, d, d);
  ops::attention<T>(ctx.tape, blocks(a.att, C, 0, d), blocks(a.qkv, C, 0, d), blocks(a.qkv, C, d, d),
                    blocks(a.qkv, C, 2 * d, d), a.lse, ctx.heads, ops::Mask::causal);
  ops::linear<T>(ctx.tape, a.proj, a.att, p.leaf.wo, p.leaf.bo);
  // The LayerNorm writes the leaves' output; under dropout its gradient is a separate buffer.
  const Var<T, 2> normed = ctx.dropout ? Var<T, 2>{a.out.value, a.norm_grad} : a.out;
  ops::layernorm<T>(ctx.tape, normed, a.mean, a.rstd, a.proj, p.leaf_norm.w, p.leaf_norm.b);
  const Var<T, 2> leaves = maybe_dropout(ctx, normed, a.out.grad, site);
  clear_on_backward(ctx.tape, a.span);
  return leaves;
}

/// Forward pass of one hierarchical attention on x (M, d), every op recorded on ctx.tape: B
/// sequences of Tp rows, Tp a multiple of 2^L (the caller pads). Returns the output (M, d), a
/// relay whose gradient the caller clears before its backward adds into it. Padding rows sit at
/// the end of each sequence, so no real row reads one: the leaf mask is causal and every left
/// sibling precedes its right sibling. `site` numbers this HA's dropout sites (L + 1 of them).
template <class T, int L, NodeMask NM>
Var<T, 2> hier_forward_recorded(const HierParams<T, L>& p, HierActs<T, L>& a, Var<T, 2> x, Index Tp,
                                const ForwardContext& ctx, std::uint64_t site) {
  const Var<T, 2> leaves = leaves_forward(p, a, x, Tp, ctx, site);
  return detail::tree_levels<T, L, NM, 0>(p, a, leaves, Tp >> L, ctx, site);
}

/// Tape node of a checkpointed hierarchical attention. Its backward recomputes the hierarchy level
/// by level on a tape of its own, with the same ops, masks and buffer alignments as without
/// checkpointing (so the gradients are bitwise the same) and in the same backward order: the
/// leaves recorded and the levels below the top unrecorded (which gathers every level's inputs),
/// the top level recorded and run backward; then each lower level recomputed from its gathered
/// inputs and run backward, all sharing one level's values; last the leaves' backward.
template <class T, int L, NodeMask NM>
struct HierCheckpointNode {
  const HierParams<T, L>* p = nullptr;
  HierActs<T, L>* a = nullptr;
  Var<T, 2> x;           // (M, d) the hierarchy's input, kept by the caller
  Index Tp = 0;
  ForwardContext ctx;    // as in the forward pass; ctx.recompute is the tape to recompute on
  std::uint64_t site = 0;
  void backward() const {
    Tape& tape = *ctx.recompute;
    tape.clear();
    ForwardContext recorded = ctx;
    recorded.tape = &tape;
    recorded.recompute = nullptr;
    ForwardContext plain = recorded;
    plain.tape = nullptr;
    const Index C = Tp >> L;
    const Var<T, 2> leaves = leaves_forward(*p, *a, x, Tp, recorded, site);
    const std::size_t keep = tape.size();
    const Var<T, 2> below_top = detail::tree_levels<T, L, NM, 0, L - 1>(*p, *a, leaves, C, plain, site);
    detail::tree_level<T, L, NM, L - 1>(*p, *a, below_top, C, recorded, site);
    tape.backward_to(keep);
    detail::recompute_levels_backward<T, L, NM, L - 2>(*p, *a, C, recorded, site, keep);
    tape.backward();
    tape.clear();
  }
};

/// Forward pass of one hierarchical attention (see hier_forward_recorded). When ctx.recompute is
/// set (gradient checkpointing, with activations laid out by make_hier_acts(..., true)), it runs
/// without recording and records one HierCheckpointNode instead.
template <class T, int L, NodeMask NM>
Var<T, 2> hier_forward(const HierParams<T, L>& p, HierActs<T, L>& a, Var<T, 2> x, Index Tp,
                       const ForwardContext& ctx, std::uint64_t site) {
  if (!ctx.tape || !ctx.recompute) return hier_forward_recorded<T, L, NM>(p, a, x, Tp, ctx, site);
  ForwardContext plain = ctx;
  plain.tape = nullptr;
  const Var<T, 2> y = hier_forward_recorded<T, L, NM>(p, a, x, Tp, plain, site);
  ctx.tape->record(HierCheckpointNode<T, L, NM>{&p, &a, x, Tp, ctx, site});
  return y;
}

}  // namespace hattn::frozen::model
