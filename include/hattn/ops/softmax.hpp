#pragma once
/// \file
/// Row-wise softmax over the last dimension, the inference head of the decoder: probabilities over
/// the vocabulary, y[i, j] = exp(x[i, j] - max_k x[i, k]) / sum_k exp(x[i, k] - max_k x[i, k]).

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/core/vector_math.hpp"

namespace hattn::ops {

namespace detail {

/// A row of V entries as an Eigen array, for vectorized exp and reductions.
template <class T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

/// Elements per parallel task of the row-wise ops over (M, V) matrices (softmax, cross-entropy):
/// enough work to amortize scheduling, small enough to spread a batch over the cores.
inline constexpr Index softmax_task_elements = Index{1} << 14;

/// Calls `f(i)` for every row `i` of a (rows, cols) matrix, in parallel over fixed blocks of
/// consecutive rows. The block size depends only on `cols`, never on the thread count.
template <class F>
void softmax_for_rows(Index rows, Index cols, F&& f) {
  const Index per_task = std::max<Index>(1, softmax_task_elements / std::max<Index>(1, cols));
  parallel_for((rows + per_task - 1) / per_task, [&](Index t) {
    const Index i1 = std::min(rows, (t + 1) * per_task);
    for (Index i = t * per_task; i < i1; ++i) f(i);
  });
}

template <class T>
void check_softmax(View<const T, 2> y, View<const T, 2> x, const char* op) {
  hattn::detail::require(x.dim(0) > 0 && x.dim(1) > 0, op, "zero-sized dimension: x ", x.shape());
  hattn::detail::require(y.dims == x.dims, op, "shape mismatch: y ", y.shape(), ", x ", x.shape(),
                         " (want y and x both (M, V))");
}

}  // namespace detail

/// y = softmax(x) along each row, with the row maximum subtracted before exponentiating, so huge
/// logits neither overflow nor lose the result (a constant added to a row leaves y unchanged).
/// The normalizer of each row is accumulated in double, also for float.
/// requires: x (M, V), y (M, V); M, V > 0; every row of x has a finite maximum (entries may be
///           -inf, not +inf or NaN).
/// ensures: every entry of y is written; each row of y is non-negative and sums to 1 up to rounding.
template <class T>
void softmax_forward(View<T, 2> y, View<const Id<T>, 2> x) {
  detail::check_softmax<T>(y, x, "softmax_forward");
  const Index m = x.dim(0), v = x.dim(1);
  detail::softmax_for_rows(m, v, [&](Index i) {
    const detail::ConstRow<T> xr(x.data + i * v, v);  // (V)
    detail::Row<T> yr(y.data + i * v, v);             // (V); may be x itself
    const T top = xr.maxCoeff();
    exp_shifted(yr.data(), xr.data(), v, top);  // vectorized; -inf entries give exactly 0
    yr *= static_cast<T>(1.0 / sum_double(yr.data(), v));
  });
}

/// Adds the gradient of softmax_forward: dx[i, j] += y[i, j] * (dy[i, j] - sum_k dy[i, k] y[i, k]),
/// using the forward output y (not x). The row dot product is accumulated in double. dx may be
/// empty (nothing is done).
/// requires: dy (M, V), y (M, V) the output of softmax_forward, dx (M, V) or empty; M, V > 0.
/// ensures: dx is only added to.
template <class T>
void softmax_backward(View<const T, 2> dy, View<const Id<T>, 2> y,
                      View<Id<T>, 2> dx) {
  detail::check_softmax<T>(dy, y, "softmax_backward");
  hattn::detail::require(!dx.present() || dx.dims == y.dims, "softmax_backward",
                         "gradient shape mismatch: dx ", dx.shape(), " for y ", y.shape());
  if (!dx.present()) return;
  const Index m = y.dim(0), v = y.dim(1);
  detail::softmax_for_rows(m, v, [&](Index i) {
    const T* dyr = dy.data + i * v;  // (V)
    const T* yr = y.data + i * v;    // (V)
    T* dxr = dx.data + i * v;        // (V)
    double dot = 0;
    for (Index j = 0; j < v; ++j) dot += double(dyr[j]) * double(yr[j]);
    const T d = static_cast<T>(dot);
    for (Index j = 0; j < v; ++j) dxr[j] += yr[j] * (dyr[j] - d);
  });
}

/// Tape node of softmax: the output's gradient, the output itself and the input's gradient.
template <class T>
struct SoftmaxNode {
  View<const T, 2> dy;  ///< (M, V) gradient of the output
  View<const T, 2> y;   ///< (M, V) output of the forward pass
  View<T, 2> dx;        ///< (M, V) gradient of the input, added to; may be empty
  /// Adds the input's gradient.
  void backward() const { softmax_backward<T>(dy, y, dx); }
};

/// Training-mode softmax: runs softmax_forward(y.value, x.value) and, when `tape` is given,
/// records the backward, which reads y.value and y.grad and adds into x.grad (may be empty).
/// requires: as softmax_forward; y.grad (M, V) when tape is given; y.value stays unchanged
///           until the backward pass has run.
template <class T>
void softmax(Tape* tape, Var<T, 2> y, Var<T, 2> x) {
  softmax_forward<T>(y.value, x.value);
  if (tape) tape->record(SoftmaxNode<T>{y.grad, y.value, x.grad});
}

}  // namespace hattn::ops
