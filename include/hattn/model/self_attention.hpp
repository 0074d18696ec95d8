#pragma once
/// \file
/// Causal self-attention inside blocks of rows, then LayerNorm and dropout:
/// `Dropout(LN(MHA(x, x, causal)))` on each block. The hierarchy's leaves run it on chunks of C
/// rows (SPEC.md "Leaf"); the dense baseline runs it on whole sequences (SPEC.md "Variants").

#include <string>

#include "hattn/model/activations.hpp"
#include "hattn/model/layers.hpp"
#include "hattn/ops/attention.hpp"
#include "hattn/ops/layernorm.hpp"
#include "hattn/ops/linear.hpp"

namespace hattn::model {

/// Parameters of one self-attention layer: the attention and its LayerNorm.
template <class T>
struct SelfAttentionParams {
  MhaParams<T> mha;    ///< `<prefix>.self_attention`
  NormParams<T> norm;  ///< `<prefix>.norm`
};

/// Takes and names a self-attention layer's parameters under `prefix` (e.g.
/// "decoder_block.hier_attn1.leaf_attention").
template <class T>
SelfAttentionParams<T> make_self_attention(ParameterBuilder<T>& pb, const std::string& prefix, Index d) {
  SelfAttentionParams<T> p;
  p.mha = make_mha(pb, prefix + ".self_attention", d);
  p.norm = make_norm(pb, prefix + ".norm", d);
  return p;
}

/// Activations of one self-attention layer over M rows in blocks of `rows`. Gradients other than
/// the output's live in one span.
template <class T>
struct SelfAttentionActs {
  Index rows = 0;          ///< rows per block (a leaf chunk, or a whole sequence)
  Var<T, 2> qkv;           ///< (M, 3d) queries | keys | values
  Var<T, 2> att;           ///< (M, d) attention output, heads side by side
  View<T, 3> lse;          ///< (M / rows, h, rows) log-sum-exps
  Var<T, 2> proj;          ///< (M, d)
  View<T, 2> norm_grad;    ///< (M, d) gradient of the LayerNorm output under dropout
  View<T, 1> mean, rstd;   ///< (M)
  Var<T, 2> out;           ///< (M, d) LayerNorm, dropout in place: relay 0
  View<T, 1> span;         ///< the gradients but out's, flat
  std::uint64_t site = 0;  ///< the dropout site
};

/// Takes the activations of a self-attention layer over M rows in blocks of `rows` (a span of its
/// own; values in the recompute region when the builder's recompute() is on).
template <class T>
SelfAttentionActs<T> make_self_attention_acts(ActivationBuilder<T>& ab, Index M, Index rows, Index d,
                                              Index heads) {
  SelfAttentionActs<T> a;
  a.rows = rows;
  ab.begin_span();
  a.qkv = ab.local(M, 3 * d);
  a.att = ab.local(M, d);
  a.lse = ab.stat(M / rows, heads, rows);
  a.proj = ab.local(M, d);
  a.norm_grad = ab.span_grad(M, d);
  a.mean = ab.stat(M);
  a.rstd = ab.stat(M);
  a.span = ab.span_grads();
  a.out = ab.relay(0, M, d);
  a.site = ab.dropout_site();
  return a;
}

/// Forward pass on x (M, d): one fused Q|K|V GEMM over every row, attention inside each block of
/// a.rows rows under `mask` (causal; the notebook's for seed_compat), the output projection,
/// LayerNorm and dropout. Returns the output (M, d), a relay whose gradient the caller clears
/// before its backward adds into it.
template <class T>
Var<T, 2> self_attention_forward(const SelfAttentionParams<T>& p, SelfAttentionActs<T>& a, Var<T, 2> x,
                                 const ForwardContext& ctx, ops::Mask mask = ops::Mask::causal) {
  const Index d = x.value.dim(1), R = a.rows;
  project(ctx.tape, a.qkv, x, p.mha.wqkv, p.mha.bqkv, d, d);
  ops::attention<T>(ctx.tape, blocks(a.att, R, 0, d), blocks(a.qkv, R, 0, d), blocks(a.qkv, R, d, d),
                    blocks(a.qkv, R, 2 * d, d), a.lse, ctx.heads, mask);
  ops::linear<T>(ctx.tape, a.proj, a.att, p.mha.wo, p.mha.bo);
  // The LayerNorm writes the output; under dropout its gradient is a separate buffer.
  const Var<T, 2> normed = ctx.dropout ? Var<T, 2>{a.out.value, a.norm_grad} : a.out;
  ops::layernorm<T>(ctx.tape, normed, a.mean, a.rstd, a.proj, p.norm.w, p.norm.b);
  const Var<T, 2> y = maybe_dropout(ctx, normed, a.out.grad, a.site);
  clear_on_backward(ctx.tape, a.span);
  return y;
}

}  // namespace hattn::model
