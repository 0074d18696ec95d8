#pragma once
/// \file
/// Carves a forward pass's activations (and, in training, their gradients) out of two arenas.

#include "hattn/autograd/var.hpp"
#include "hattn/core/arena.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::model {

/// Hands out activation buffers in a fixed order. A layout function runs once with a sizing
/// builder (no arenas: it only counts) and once over arenas reserved to that count. Without a
/// gradient arena (inference) every Var's gradient is empty.
template <class T>
class ActivationBuilder {
 public:
  /// A sizing builder.
  ActivationBuilder() = default;
  /// A builder over reserved arenas; `grads` is null for inference.
  ActivationBuilder(Arena<T>& values, Arena<T>* grads) : values_(&values), grads_(grads) {}

  /// A tensor of `dims...` and, in training, its gradient.
  template <class... D>
  Var<T, sizeof...(D)> take(D... dims) {
    Var<T, sizeof...(D)> v;
    v.value = stat(dims...);
    const Index n = (Index{1} * ... * Index(dims));
    if (training()) {
      grad_plan_.add<T>(n);
      if (grads_) v.grad = grads_->view(dims...);
    }
    return v;
  }

  /// A gradient-only buffer (for in-place ops whose output reuses their input's values).
  template <class... D>
  View<T, sizeof...(D)> take_grad(D... dims) {
    if (!training()) return {};
    grad_plan_.add<T>((Index{1} * ... * Index(dims)));
    return grads_ ? grads_->view(dims...) : View<T, sizeof...(D)>();
  }

  /// A tensor without gradient (saved statistics: means, inverse deviations, log-sum-exps).
  template <class... D>
  View<T, sizeof...(D)> stat(D... dims) {
    value_plan_.add<T>((Index{1} * ... * Index(dims)));
    return values_ ? values_->view(dims...) : View<T, sizeof...(D)>();
  }

  /// Elements of values taken so far.
  Index values_total() const { return value_plan_.total(); }
  /// Elements of gradients taken so far.
  Index grads_total() const { return grad_plan_.total(); }

  /// Sizing only: whether gradients are counted (training layout).
  void set_training(bool on) { sizing_training_ = on; }

  /// Whether this layout has gradients (training) or not (inference).
  bool training() const { return values_ ? grads_ != nullptr : sizing_training_; }

 private:

  ArenaPlan value_plan_, grad_plan_;
  Arena<T>* values_ = nullptr;
  Arena<T>* grads_ = nullptr;
  bool sizing_training_ = true;
};

}  // namespace hattn::model
