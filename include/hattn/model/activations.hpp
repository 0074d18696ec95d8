#pragma once
/// \file
/// Carves a forward pass's activations (and, in training, their gradients) out of two arenas, in
/// regions by lifetime, so buffers whose lives do not overlap share memory:
///
///   region     holds                                                      lives
///   permanent  what a backward pass reads (inputs of products, statistics) the whole step
///   relay 0/1  a tree level's output, read only by the next level          one level to the next
///   span       a layer's internal gradients and transient values           one layer's backward
///   recompute  what checkpointing recomputes: a hierarchy's values (all     one hierarchy,
///              hierarchies overlap; its tree levels overlap but for their     the feed-forward
///              gathered inputs), a feed-forward's hidden layer, a logit chunk or the head
///
/// Gradients outside the permanent region are cleared on the tape just before the backward pass
/// that first adds into them (model::clear_on_backward), not at the start of the step.

#include <algorithm>
#include <array>

#include <cstdint>
#include <cstring>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/arena.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::model {

/// Where a buffer lives (see the file comment).
enum class Region { permanent, relay0, relay1, span, recompute };

/// Hands out activation buffers in a fixed order. A layout function runs once with a sizing
/// builder (no arenas: it only measures each region) and once with a builder over arenas reserved
/// to those measures. Without a gradient arena (inference) every Var's gradient is empty.
template <class T>
class ActivationBuilder {
  static constexpr int regions = 5;

 public:
  /// A sizing builder, for a training (gradients counted) or an inference layout.
  explicit ActivationBuilder(bool training = true) : training_(training) {}

  /// A builder over `values` and `grads` (null for inference), reserved here to what `sizing`
  /// measured when it ran the same layout.
  ActivationBuilder(const ActivationBuilder& sizing, Arena<T>& values, Arena<T>* grads)
      : training_(grads != nullptr), values_(&values), grads_(grads) {
    Index vb = 0, gb = 0;
    for (int r = 0; r < regions; ++r) {
      value_base_[r] = vb;
      grad_base_[r] = gb;
      vb += sizing.value_max_[r];
      gb += sizing.grad_max_[r];
    }
    values.reserve(vb);
    if (grads) grads->reserve(gb);
  }

  /// A tensor of `dims...` and, in training, its gradient, both kept for the whole step (values in
  /// the recompute region while recompute() is on).
  template <class... D>
  Var<T, sizeof...(D)> take(D... dims) {
    return {stat(dims...), take_grad(dims...)};
  }

  /// A gradient-only buffer kept for the whole step (for in-place ops).
  template <class... D>
  View<T, sizeof...(D)> take_grad(D... dims) {
    return grad(Region::permanent, dims...);
  }

  /// A tensor without gradient (saved statistics: means, inverse deviations, log-sum-exps), in the
  /// recompute region while recompute() is on.
  template <class... D>
  View<T, sizeof...(D)> stat(D... dims) {
    return value(recompute_ ? Region::recompute : Region::permanent, dims...);
  }

  /// A tensor whose value a backward pass reads (kept as stat() keeps it) but whose gradient lives
  /// only in the current span.
  template <class... D>
  Var<T, sizeof...(D)> local(D... dims) {
    return {stat(dims...), grad(Region::span, dims...)};
  }

  /// A tensor whose value and gradient both live only in the current span: no backward pass
  /// reads its value.
  template <class... D>
  Var<T, sizeof...(D)> transient(D... dims) {
    return {value(Region::span, dims...), grad(Region::span, dims...)};
  }

  /// A gradient-only buffer in the current span.
  template <class... D>
  View<T, sizeof...(D)> span_grad(D... dims) {
    return grad(Region::span, dims...);
  }

  /// Relay buffer `which` (0 or 1), value and gradient, each starting at the relay's beginning.
  template <class... D>
  Var<T, sizeof...(D)> relay(int which, D... dims) {
    const Region r = which == 0 ? Region::relay0 : Region::relay1;
    value_off_[int(r)] = grad_off_[int(r)] = 0;
    return {value(r, dims...), grad(r, dims...)};
  }

  /// Starts a span: what span buffers follow overlap those of every earlier span.
  void begin_span() { value_off_[int(Region::span)] = grad_off_[int(Region::span)] = 0; }

  /// The gradients taken since begin_span(), flat (to clear before the span's backward).
  View<T, 1> span_grads() const {
    const Index n = grad_off_[int(Region::span)];
    return {grads_ && n > 0 ? grads_->data() + grad_base_[int(Region::span)] : nullptr, grads_ ? n : 0};
  }

  /// While on, stat(), take() and local() put values in the recompute region, starting over at
  /// each switch on: a checkpointed hierarchy's values, recomputed in its backward pass.
  void set_recompute(bool on) {
    recompute_ = on;
    if (on) value_off_[int(Region::recompute)] = 0;
  }

  /// Where (elements into the recompute region) the next recompute value goes. With
  /// set_recompute_offset(), values of one recomputation can be laid out out of order, or over
  /// each other when their lives do not overlap (a checkpointed hierarchy's tree levels).
  Index recompute_offset() const { return value_off_[int(Region::recompute)]; }
  /// Moves the recompute region's next value to `offset` elements (from recompute_offset()).
  void set_recompute_offset(Index offset) { value_off_[int(Region::recompute)] = offset; }

  /// Elements of the permanent gradients (the part to zero at the start of a step).
  Index permanent_grads() const { return grad_max_[int(Region::permanent)]; }

  /// Whether this layout has gradients (training) or not (inference).
  bool training() const { return training_; }

  /// The next dropout site. Layouts take sites in the order their forward passes run the
  /// dropouts, so counting them numbers every dropout of the model, each its own Philox stream.
  std::uint64_t dropout_site() { return sites_++; }

 private:
  template <class... D>
  View<T, sizeof...(D)> value(Region r, D... dims) {
    return place(values_, value_base_, value_off_, value_max_, r, dims...);
  }
  template <class... D>
  View<T, sizeof...(D)> grad(Region r, D... dims) {
    if (!training_) return {};
    return place(grads_, grad_base_, grad_off_, grad_max_, r, dims...);
  }

  template <class... D>
  static View<T, sizeof...(D)> place(Arena<T>* arena, const std::array<Index, regions>& base,
                                     std::array<Index, regions>& off, std::array<Index, regions>& max,
                                     Region r, D... dims) {
    const int i = int(r);
    const Index n = (Index{1} * ... * Index(dims));
    const Index at = off[i];
    off[i] += ArenaPlan::round_up<T>(n);
    max[i] = std::max(max[i], off[i]);
    return arena ? View<T, sizeof...(D)>(arena->data() + base[i] + at, dims...) : View<T, sizeof...(D)>();
  }

  bool training_ = true;
  bool recompute_ = false;
  std::uint64_t sites_ = 0;  // dropout sites taken
  Arena<T>* values_ = nullptr;
  Arena<T>* grads_ = nullptr;
  std::array<Index, regions> value_base_{}, value_off_{}, value_max_{};  // elements, per region
  std::array<Index, regions> grad_base_{}, grad_off_{}, grad_max_{};
};

/// Tape node that sets a gradient buffer to zero when the backward pass reaches it.
template <class T>
struct ClearNode {
  View<T, 1> grad;  // (n)
  void backward() const { std::memset(grad.data, 0, std::size_t(grad.dim(0)) * sizeof(T)); }
};

/// Records, when recording, that `grad` is cleared at this point of the backward pass: after the
/// backward of everything recorded later (the buffer's previous users) and before the backward of
/// everything recorded earlier (its next users, which add into it).
template <class T>
void clear_on_backward(Tape* tape, View<T, 1> grad) {
  if (tape && grad.present()) tape->record(ClearNode<T>{grad});
}

/// As above, for a whole (rows, cols) buffer.
template <class T>
void clear_on_backward(Tape* tape, View<T, 2> grad) {
  if (grad.present()) clear_on_backward(tape, View<T, 1>(grad.data, grad.size()));
}

}  // namespace hattn::model
