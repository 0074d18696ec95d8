#pragma once
/// \file
/// ReLU over a flat buffer: y = max(x, 0). Callers flatten their tensors (View::matrix(), or a
/// pointer and the element count) into rank-1 views.

#include <algorithm>
#include <functional>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

namespace detail {

/// Elements per parallel task of relu: a constant, so the partition never depends on the threads.
inline constexpr Index relu_block = Index{1} << 14;

/// Sizes shared by relu_forward and relu_backward: `a` and `b` of one nonzero size.
template <class T>
void check_relu_sizes(View<const T, 1> a, View<const T, 1> b, const char* op, const char* a_name,
                      const char* b_name) {
  hattn::detail::require(b.dim(0) > 0, op, "zero-sized dimension: ", b_name, " ", b.shape());
  hattn::detail::require(a.dim(0) == b.dim(0), op, "shape mismatch: ", a_name, " ", a.shape(), ", ",
                         b_name, " ", b.shape(), " (want equal sizes)");
}

}  // namespace detail

/// y = max(x, 0) elementwise; NaN stays NaN (torch.relu does the same).
/// requires: x (n), y (n), n > 0; y is x itself (in place) or disjoint from it.
/// ensures: every entry of y is written; y > 0 exactly where x > 0, so backward may be given the
/// output in place of the input (which is what makes in-place relu valid in training).
template <class T>
void relu_forward(View<T, 1> y, View<const Id<T>, 1> x) {
  detail::check_relu_sizes<T>(y, x, "relu_forward", "y", "x");
  // In place is safe (entry i reads only x[i]); a partial overlap would race between tasks.
  hattn::detail::require(y.data == x.data || disjoint<T>(y.data, x.dim(0), x.data, x.dim(0)),
                         "relu_forward", "y overlaps x without being the same buffer");
  const Index n = x.dim(0);
  parallel_for((n + detail::relu_block - 1) / detail::relu_block, [&](Index t) {
    const Index i0 = t * detail::relu_block, i1 = std::min(n, i0 + detail::relu_block);
    for (Index i = i0; i < i1; ++i) y.data[i] = x.data[i] < T(0) ? T(0) : x.data[i];
  });
}

/// Adds the gradient of relu_forward: dx += dy where x > 0 (0 elsewhere, also for x = 0 and NaN;
/// a select, so an infinite dy where x <= 0 adds 0, not NaN). dx may be empty (not computed).
/// `x` may be the forward output y instead of the input: both give the same mask.
/// requires: dy (n), x (n), dx (n) or empty, n > 0; dx disjoint from dy.
template <class T>
void relu_backward(View<const T, 1> dy, View<const Id<T>, 1> x, View<Id<T>, 1> dx) {
  detail::check_relu_sizes<T>(dy, x, "relu_backward", "dy", "x");
  if (!dx.present()) return;
  detail::check_relu_sizes<T>(dx, dy, "relu_backward", "dx", "dy");
  // dx aliasing dy would add dy to itself before (or while) it is read.
  hattn::detail::require(disjoint<T>(dx.data, dy.dim(0), dy.data, dy.dim(0)), "relu_backward",
                         "dx overlaps dy");
  const Index n = x.dim(0);
  parallel_for((n + detail::relu_block - 1) / detail::relu_block, [&](Index t) {
    const Index i0 = t * detail::relu_block, i1 = std::min(n, i0 + detail::relu_block);
    for (Index i = i0; i < i1; ++i) dx.data[i] += x.data[i] > T(0) ? dy.data[i] : T(0);
  });
}

/// The gradient of an in-place relu whose input gradient has no other contributor, in place:
/// g = dy on entry, dx = (y > 0 ? dy : 0) on exit. Bitwise what relu_backward adds into a zeroed
/// dx, without a second buffer.
/// requires: g (n), y (n) the forward output (or input), n > 0.
template <class T>
void relu_backward_in_place(View<T, 1> g, View<const Id<T>, 1> y) {
  detail::check_relu_sizes<T>(g, y, "relu_backward_in_place", "g", "y");
  const Index n = y.dim(0);
  parallel_for((n + detail::relu_block - 1) / detail::relu_block, [&](Index t) {
    const Index i0 = t * detail::relu_block, i1 = std::min(n, i0 + detail::relu_block);
    for (Index i = i0; i < i1; ++i) g.data[i] = T(0) + (y.data[i] > T(0) ? g.data[i] : T(0));
  });
}

/// Tape node of relu: what relu_backward needs.
template <class T>
struct ReluNode {
  View<const T, 1> dy, x;  // (n), (n): x is the input or, for in-place relu, the output
  View<T, 1> dx;           // (n) or empty
  void backward() const { relu_backward<T>(dy, x, dx); }
};

/// Training-mode relu: runs relu_forward and, when `tape` is given, records the backward.
/// y.value may be x.value (in place); y.grad and x.grad must then still be distinct buffers.
template <class T>
void relu(Tape* tape, Var<T, 1> y, Var<T, 1> x) {
  relu_forward<T>(y.value, x.value);
  if (tape) tape->record(ReluNode<T>{y.grad, x.value, x.grad});
}

/// Tape node of relu_in_place.
template <class T>
struct ReluInPlaceNode {
  View<T, 1> g;        // (n) dy on entry, dx on exit
  View<const T, 1> y;  // (n) the output
  void backward() const { relu_backward_in_place<T>(g, y); }
};

/// Training-mode relu in place on x's value and gradient: one buffer each, for an x whose
/// gradient only this relu adds into (its backward turns dy into dx where dy was).
template <class T>
void relu_in_place(Tape* tape, Var<T, 1> x) {
  relu_forward<T>(x.value, x.value);
  if (tape && x.grad.present()) tape->record(ReluInPlaceNode<T>{x.grad, x.value});
}

}  // namespace hattn::ops
