#pragma once
/// \file
/// One level of the hierarchy's binary tree (SPEC.md "Tree" and "Variants"): gather the sibling
/// pairs' halves, apply the node rule to each right half, scatter [left ; new right]. The node
/// rule is the right half's cross-attention over the left half (or over k mean-pooled summaries
/// of it, `summaries`), replacing the right half or added to it (`node_combine`), then LayerNorm
/// and dropout.

#include <array>
#include <string>

#include "hattn/config.hpp"
#include "hattn/model/activations.hpp"
#include "hattn/model/layers.hpp"
#include "hattn/ops/attention.hpp"
#include "hattn/ops/copy_rows.hpp"
#include "hattn/ops/layernorm.hpp"
#include "hattn/ops/linear.hpp"
#include "hattn/ops/pool.hpp"
#include "hattn/ops/residual.hpp"

namespace hattn::model {

/// Parameters of one tree level: `node_layers.{l}.cross_attention` and `node_layers.{l}.norm`.
template <class T>
struct NodeParams {
  MhaParams<T> mha;
  NormParams<T> norm;
};

/// Takes and names a tree level's parameters under `prefix` (e.g. "...hier_attn1.node_layers.0").
template <class T>
NodeParams<T> make_node(ParameterBuilder<T>& pb, const std::string& prefix, Index d) {
  NodeParams<T> p;
  p.mha = make_mha(pb, prefix + ".cross_attention", d);
  p.norm = make_norm(pb, prefix + ".norm", d);
  return p;
}

/// Key rows per sibling pair at a level whose siblings have S rows: S, or `summaries` when the
/// level pools (summaries > 0 and S > summaries).
template <Config C>
constexpr Index level_keys(Index S) {
  return C.summaries > 0 && S > C.summaries ? Index(C.summaries) : S;
}

/// The mask of a tree level's cross-attention: the node mask, at summary resolution when the
/// level pools; the notebook's under seed_compat.
template <Config C>
constexpr ops::Mask level_mask(Index S) {
  if constexpr (C.seed_compat) return ops::Mask::notebook;
  if (C.node_mask == NodeMask::full) return ops::Mask::none;
  return level_keys<C>(S) == S ? ops::Mask::causal : ops::Mask::summaries(C.summaries, S);
}

/// Activations of one tree level over M padded rows (Mh = M / 2 rows per side, P sibling pairs
/// of S rows each, K = level_keys(S) key rows per pair). Gradients other than the output's live
/// in the level's span.
template <class T>
struct LevelActs {
  Index S = 0;              ///< rows per sibling
  Index K = 0;              ///< key rows per pair: S, or the summaries
  Var<T, 2> left, right;    ///< (Mh, d) the pairs' left and right halves, gathered
  Var<T, 2> pooled;         ///< (P K, d) summaries of the left halves; empty unless the level pools
  Var<T, 2> q;              ///< (Mh, d) queries from the right halves
  Var<T, 2> kv;             ///< (P K, 2d) keys | values from the left halves or their summaries
  Var<T, 2> att;            ///< (Mh, d) attention output, heads side by side
  View<T, 3> lse;           ///< (P, h, S) log-sum-exp of each score row
  Var<T, 2> proj;           ///< (Mh, d) output projection
  Var<T, 2> sum;            ///< (Mh, d) right + proj; NodeCombine::residual only
  Var<T, 2> norm;           ///< (Mh, d) LayerNorm output (dropout applies in place); transient
  View<T, 1> mean, rstd;    ///< (Mh) LayerNorm statistics
  View<T, 2> dropped_grad;  ///< (Mh, d) gradient of the dropout output
  Var<T, 2> out;            ///< (M, d) [left ; new right] per pair: the level's output (a relay)
  View<T, 1> span;          ///< every gradient above but out's, flat: cleared before the backward
  std::uint64_t site = 0;   ///< the dropout site
};

/// Takes tree level `l`'s activations over M rows, leaf chunks of C rows, into relay (l + 1) % 2.
/// `gathered` / `values`: with checkpointing, where in the recompute region the level's gathered
/// halves and its other values go (negative: where the builder is).
template <Config C, class T>
LevelActs<T> make_level_acts(ActivationBuilder<T>& ab, int l, Index M, Index chunk, Index gathered = -1,
                             Index values = -1) {
  constexpr Index d = C.d_model, heads = C.heads;
  LevelActs<T> v;
  const Index Mh = M / 2, S = chunk << l, P = M / (2 * S), K = level_keys<C>(S);
  v.S = S;
  v.K = K;
  ab.begin_span();
  if (gathered >= 0) ab.set_recompute_offset(gathered);
  v.left = ab.local(Mh, d);
  v.right = ab.local(Mh, d);
  if (values >= 0) ab.set_recompute_offset(values);
  if (K != S) v.pooled = ab.local(P * K, d);
  v.q = ab.local(Mh, d);
  v.kv = ab.local(P * K, 2 * d);
  v.att = ab.local(Mh, d);
  v.lse = ab.stat(P, heads, S);
  v.proj = ab.local(Mh, d);
  if constexpr (C.node_combine == NodeCombine::residual) v.sum = ab.local(Mh, d);
  v.norm = ab.transient(Mh, d);
  v.mean = ab.stat(Mh);
  v.rstd = ab.stat(Mh);
  v.dropped_grad = ab.span_grad(Mh, d);
  v.span = ab.span_grads();
  v.out = ab.relay((l + 1) % 2, M, d);
  v.site = ab.dropout_site();
  return v;
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

}  // namespace detail

/// The node rule on gathered halves: the right halves' new rows, before the scatter.
/// requires: v.left and v.right hold the pairs' halves.
template <Config C, class T>
Var<T, 2> node_rule(const NodeParams<T>& p, LevelActs<T>& v, const ForwardContext& ctx) {
  constexpr Index d = C.d_model;
  const Index S = v.S, K = v.K;
  project(ctx.tape, v.q, v.right, row_slice(p.mha.wqkv, 0, d), slice(p.mha.bqkv, 0, d), -1, d);
  Var<T, 2> keys_from = v.left;  // (P K, d): the left rows, or their summaries (pool, then project)
  if (K != S) {
    ops::mean_pool<T>(ctx.tape, blocks(v.pooled, K, 0, d), blocks(v.left, S, 0, d));
    keys_from = v.pooled;
  }
  project(ctx.tape, v.kv, keys_from, row_slice(p.mha.wqkv, d, 2 * d), slice(p.mha.bqkv, d, 2 * d), 0, d);
  ops::attention<T>(ctx.tape, blocks(v.att, S, 0, d), blocks(v.q, S, 0, d), blocks(v.kv, K, 0, d),
                    blocks(v.kv, K, d, d), v.lse, ctx.heads, level_mask<C>(S));
  ops::linear<T>(ctx.tape, v.proj, v.att, p.mha.wo, p.mha.bo);
  Var<T, 2> combined = v.proj;  // (Mh, d) what the LayerNorm reads
  if constexpr (C.node_combine == NodeCombine::residual) {
    ops::residual<T>(ctx.tape, flat(v.sum), flat(v.right), flat(v.proj));
    combined = v.sum;
  }
  ops::layernorm<T>(ctx.tape, v.norm, v.mean, v.rstd, combined, p.norm.w, p.norm.b);
  return maybe_dropout(ctx, v.norm, v.dropped_grad, v.site);
}

/// Tree level on `y` (M, d), the previous level's output: gathers the pairs' halves, applies the
/// node rule to the right halves, and writes [left ; new right] to the level's output.
/// `regathered`: the halves are already gathered (a checkpointed hierarchy recomputing the level
/// for its backward pass): the copies are recorded but not run, and the output is not written.
template <Config C, class T>
Var<T, 2> tree_level(const NodeParams<T>& p, LevelActs<T>& v, Var<T, 2> y, const ForwardContext& ctx,
                     bool regathered = false) {
  constexpr Index d = C.d_model;
  const Index S = v.S;
  // Copies whose values are already in place are only recorded, for their backward passes.
  const auto copy = [&](RowsVar<T> dst, RowsVar<T> src) {
    regathered ? ops::record_copy_rows<T>(ctx.tape, dst, src) : ops::copy_rows<T>(ctx.tape, dst, src);
  };

  // Gather the pairs' halves so each projection is one GEMM over all pairs.
  copy(blocks(v.left, S, 0, d), detail::side(y, S, 0));
  copy(blocks(v.right, S, 0, d), detail::side(y, S, 1));
  const Var<T, 2> right = node_rule<C, T>(p, v, ctx);

  // [left ; new right]: the left half passes through unchanged.
  copy(detail::side(v.out, S, 0), detail::side(y, S, 0));
  copy(detail::side(v.out, S, 1), blocks(right, S, 0, d));
  // Backward clears the level's span and its input's gradient (a relay only this level adds
  // into) before running the ops above.
  clear_on_backward(ctx.tape, v.span);
  clear_on_backward(ctx.tape, y.grad);
  return v.out;
}

}  // namespace hattn::model
