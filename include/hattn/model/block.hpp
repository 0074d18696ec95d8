#pragma once
/// \file
/// The decoder block (SPEC.md step 2): two attention slots (a mixer, model/mixer.hpp: the
/// hierarchical attention by default) and a 4x feed-forward, each with a residual connection
/// followed by LayerNorm.

#include <string>

#include "hattn/config.hpp"
#include "hattn/model/activations.hpp"
#include "hattn/model/layers.hpp"
#include "hattn/model/mixer.hpp"
#include "hattn/ops/layernorm.hpp"
#include "hattn/ops/linear.hpp"
#include "hattn/ops/relu.hpp"
#include "hattn/ops/residual.hpp"

namespace hattn::model {

/// Parameters of one decoder block whose attention slots are mixer `M`.
template <class T, class M>
struct BlockParams {
  typename M::Params ha1, ha2;     ///< the slots: hier_attn1, hier_attn2 (attn1, attn2 when dense)
  Var<T, 2> w1;                    ///< (4d, d) feed_forward.0.weight
  Var<T, 1> b1;                    ///< (4d)
  Var<T, 2> w2;                    ///< (d, 4d) feed_forward.2.weight
  Var<T, 1> b2;                    ///< (d)
  NormParams<T> norm1, norm2, norm3;
};

/// Takes and names a block's parameters under `prefix` (e.g. "decoder_block").
template <class T, class M>
BlockParams<T, M> make_block(ParameterBuilder<T>& pb, const std::string& prefix, Index d) {
  BlockParams<T, M> b;
  b.ha1 = M::make_params(pb, prefix + "." + M::slot_name(1));
  b.ha2 = M::make_params(pb, prefix + "." + M::slot_name(2));
  std::tie(b.w1, b.b1) = make_linear(pb, prefix + ".feed_forward.0", 4 * d, d);
  std::tie(b.w2, b.b2) = make_linear(pb, prefix + ".feed_forward.2", d, 4 * d);
  b.norm1 = make_norm(pb, prefix + ".norm1", d);
  b.norm2 = make_norm(pb, prefix + ".norm2", d);
  b.norm3 = make_norm(pb, prefix + ".norm3", d);
  return b;
}

/// Activations of one block over N = B * Tp rows (every sequence padded to Tp).
template <class T, class M>
struct BlockActs {
  typename M::Acts ha1, ha2;
  Var<T, 2> res1, a1;          ///< (N, d) x + HA1(x) (gradient in a span), then LN1
  View<T, 1> mean1, rstd1;     ///< (N)
  View<T, 1> res1_span;        ///< res1's gradient, flat: cleared before LN1's backward
  Var<T, 2> res2, a2;          ///< (N, d) a1 + HA2(a1) (gradient in a span), then LN2
  View<T, 1> mean2, rstd2;     ///< (N)
  View<T, 1> res2_span;        ///< res2's gradient, flat
  Var<T, 2> hidden;            ///< (N, 4d) W1 a2 + b1; ReLU applies in place, to the gradient too;
                               ///< gradient in the span; with checkpointing, value in the recompute
                               ///< region (recomputed before the feed-forward's backward)
  Var<T, 2> ff;                ///< (N, d) W2 relu(...) + b2; transient
  View<T, 1> ff_span;          ///< the feed-forward's gradients, flat: cleared before its backward
  Var<T, 2> res3, out;         ///< (N, d) a2 + ff, then LN3: the block's output
  View<T, 1> mean3, rstd3;     ///< (N)
};

/// Takes a block's activations for B sequences of Tp rows; `checkpoint`: the hierarchies' values
/// and the feed-forward's hidden layer are recomputed in backward (see the mixer's make_acts).
template <class T, class M>
BlockActs<T, M> make_block_acts(ActivationBuilder<T>& ab, Index B, Index Tp, Index d, bool checkpoint = false) {
  BlockActs<T, M> a;
  const Index N = B * Tp;
  a.ha1 = M::make_acts(ab, B, Tp, checkpoint);
  ab.begin_span();
  a.res1 = ab.local(N, d);
  a.res1_span = ab.span_grads();
  a.a1 = ab.take(N, d);
  a.mean1 = ab.stat(N);
  a.rstd1 = ab.stat(N);
  a.ha2 = M::make_acts(ab, B, Tp, checkpoint);
  ab.begin_span();
  a.res2 = ab.local(N, d);
  a.res2_span = ab.span_grads();
  a.a2 = ab.take(N, d);
  a.mean2 = ab.stat(N);
  a.rstd2 = ab.stat(N);
  ab.begin_span();
  // Checkpointed, the hidden layer shares the recompute region with the hierarchies' values: it
  // is dead (recomputed later) while they are recomputed, and they while it is.
  ab.set_recompute(checkpoint);
  a.hidden = ab.local(N, 4 * d);
  ab.set_recompute(false);
  a.ff = ab.transient(N, d);
  a.ff_span = ab.span_grads();
  a.res3 = ab.take(N, d);
  a.out = ab.take(N, d);
  a.mean3 = ab.stat(N);
  a.rstd3 = ab.stat(N);
  return a;
}

/// Tape node of a checkpointed block's feed-forward: its backward recomputes the hidden layer
/// relu(W1 a2 + b1) into `hidden` (as the forward pass computed it, bitwise).
template <class T>
struct FeedForwardRecomputeNode {
  View<T, 2> hidden;          // (N, 4d)
  View<const T, 2> a2;        // (N, d) the feed-forward's input, kept
  View<const T, 2> w1;        // (4d, d)
  View<const T, 1> b1;        // (4d)
  void backward() const {
    ops::linear_forward<T>(hidden, a2, w1, b1);
    ops::relu_forward<T>(View<T, 1>(hidden.data, hidden.size()), View<const T, 1>(hidden.data, hidden.size()));
  }
};

/// Forward pass of one block on x (B * Tp, d), every sequence padded to Tp rows; returns the block
/// output (B * Tp, d). SPEC.md pads each hierarchy's input with zero rows and slices its output
/// back to T; keeping the padded layout through the whole block computes the same real rows (no
/// real row ever reads a padding row, and every op is row-wise outside attention) while making
/// each row's position in memory depend on Tp only, so a prefix's outputs are bitwise the same for
/// every T with the same chunk size. Padding rows hold finite values that nothing real reads
/// (under seed_compat real rows do read them: the hierarchy then pads its input with zeros itself).
template <class T, class M>
Var<T, 2> block_forward(const BlockParams<T, M>& p, BlockActs<T, M>& a, Var<T, 2> x, const ForwardContext& ctx) {
  Tape* tape = ctx.tape;
  const Var<T, 2> h1 = M::forward(p.ha1, a.ha1, x, ctx);
  ops::residual<T>(tape, flat(a.res1), flat(x), flat(h1));
  clear_on_backward(tape, h1.grad);  // a relay: cleared after HA2's backward, before this one's
  ops::layernorm<T>(tape, a.a1, a.mean1, a.rstd1, a.res1, p.norm1.w, p.norm1.b);
  clear_on_backward(tape, a.res1_span);

  const Var<T, 2> h2 = M::forward(p.ha2, a.ha2, a.a1, ctx);
  ops::residual<T>(tape, flat(a.res2), flat(a.a1), flat(h2));
  clear_on_backward(tape, h2.grad);
  ops::layernorm<T>(tape, a.a2, a.mean2, a.rstd2, a.res2, p.norm2.w, p.norm2.b);
  clear_on_backward(tape, a.res2_span);

  // Feed-forward; ReLU in place on the value and, in backward, on the gradient (its backward reads
  // the output's sign, the same as the input's; nothing else adds into hidden's gradient).
  ops::linear<T>(tape, a.hidden, a.a2, p.w1, p.b1);
  ops::relu_in_place<T>(tape, flat(a.hidden));
  ops::linear<T>(tape, a.ff, a.hidden, p.w2, p.b2);
  // Checkpointed, the head's logits and the hierarchies' recomputations overwrite the hidden
  // layer: recompute it (the same ops on the same inputs, so the same bits) just before the
  // backward of the product that reads it.
  if (tape && ctx.recompute) tape->record(FeedForwardRecomputeNode<T>{a.hidden.value, a.a2.value, p.w1.value, p.b1.value});
  ops::residual<T>(tape, flat(a.res3), flat(a.a2), flat(a.ff));
  clear_on_backward(tape, a.ff_span);
  ops::layernorm<T>(tape, a.out, a.mean3, a.rstd3, a.res3, p.norm3.w, p.norm3.b);
  return a.out;
}

}  // namespace hattn::model
