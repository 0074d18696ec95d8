#pragma once
/// \file
/// Gradient checkpointing as a wrapper around a layer: the forward pass runs unrecorded and
/// records one node, whose backward recomputes the layer on a tape of its own (the same ops on
/// the same inputs, so the same bits) and replays it at once. A layer whose activations are laid
/// out in the recompute region (ActivationBuilder::set_recompute) keeps nothing between its
/// forward and its backward pass. (The hierarchy has its own, level by level, in hierarchy.hpp.)

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/model/layers.hpp"

namespace hattn::model {

/// Tape node of a checkpointed `Layer` (a type with `Params`, `Acts` and a static
/// `forward_recorded(params, acts, x, ctx)`).
template <class Layer, class T>
struct RecomputeNode {
  const typename Layer::Params* p = nullptr;
  typename Layer::Acts* a = nullptr;
  Var<T, 2> x;         // the layer's input, kept by the caller
  ForwardContext ctx;  // as in the forward pass; ctx.recompute is the tape to recompute on
  void backward() const {
    Tape& tape = *ctx.recompute;
    tape.clear();
    ForwardContext recorded = ctx;
    recorded.tape = &tape;
    recorded.recompute = nullptr;
    Layer::forward_recorded(*p, *a, x, recorded);
    tape.backward();
    tape.clear();
  }
};

/// `Layer::forward_recorded`, checkpointed when ctx asks for it (ctx.tape and ctx.recompute set).
template <class Layer, class T>
Var<T, 2> checkpointed(const typename Layer::Params& p, typename Layer::Acts& a, Var<T, 2> x,
                       const ForwardContext& ctx) {
  if (!ctx.tape || !ctx.recompute) return Layer::forward_recorded(p, a, x, ctx);
  ForwardContext plain = ctx;
  plain.tape = nullptr;
  const Var<T, 2> y = Layer::forward_recorded(p, a, x, plain);
  ctx.tape->record(RecomputeNode<Layer, T>{&p, &a, x, ctx});
  return y;
}

}  // namespace hattn::model
