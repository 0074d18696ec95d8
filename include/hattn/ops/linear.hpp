#pragma once
/// \file
/// Linear layer, PyTorch convention: y = x W^T + b with W stored (out, in).

#include <algorithm>
#include <type_traits>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/blas.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

namespace detail {
template <class T>
void check_linear(View<const T, 2> y, View<const T, 2> x, View<const T, 2> w, View<const T, 1> b,
                  const char* op) {
  hattn::detail::require(x.dim(0) > 0 && x.dim(1) > 0 && w.dim(0) > 0, op,
                         "zero-sized dimension: x ", x.shape(), ", W ", w.shape());
  hattn::detail::require(x.dim(1) == w.dim(1) && y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0) &&
                             (!b.present() || b.dim(0) == w.dim(0)),
                         op, "shape mismatch: y ", y.shape(), ", x ", x.shape(), ", W ", w.shape(),
                         ", b ", b.present() ? b.shape() : "none",
                         " (want y (M, N), x (M, K), W (N, K), b (N))");
}
}  // namespace detail

/// Adds column sums of dy to a bias gradient: db[j] += sum_i dy[i, col0 + j], for j < db's size.
/// Columns run in fixed blocks and rows are summed in order, so the sums are the same for any thread
/// count. A fused projection uses `col0` to give each of its biases its own columns.
/// requires: dy (M, N), db (n), 0 <= col0, col0 + n <= N.
template <class T>
void linear_bias_backward(View<const T, 2> dy, Index col0, View<Id<T>, 1> db) {
  const Index m = dy.dim(0), n_all = dy.dim(1), n = db.dim(0);
  hattn::detail::require(col0 >= 0 && col0 + n <= n_all, "linear_bias_backward", "columns [", col0,
                         ", ", col0 + n, ") of dy ", dy.shape(), " do not exist");
  constexpr Index block = 64;
  parallel_for((n + block - 1) / block, [&](Index t) {
    const Index j0 = t * block, width = std::min(n, j0 + block) - j0;
    // The block's running sums in registers rather than in db (which the compiler must assume
    // aliases dy): the same additions in the same order, so the same bits.
    T sum[block];  // (width) db[j0 + j] + dy[0, j] + ... + dy[i, j]
    std::copy(db.data + j0, db.data + j0 + width, sum);
    if (width == block) {
      for (Index i = 0; i < m; ++i) {
        const T* row = dy.data + i * n_all + col0 + j0;  // (block)
        for (Index j = 0; j < block; ++j) sum[j] += row[j];
      }
    } else {
      for (Index i = 0; i < m; ++i) {
        const T* row = dy.data + i * n_all + col0 + j0;  // (width)
        for (Index j = 0; j < width; ++j) sum[j] += row[j];
      }
    }
    std::copy(sum, sum + width, db.data + j0);
  });
}

/// y = x W^T + b.
/// requires: x (M, K), W (N, K), b (N) or empty, y (M, N); M, N, K > 0.
/// ensures: every entry of y is written.
template <class T>
void linear_forward(View<T, 2> y, View<const Id<T>, 2> x, View<const Id<T>, 2> w,
                    View<const Id<T>, 1> b) {
  detail::check_linear<T>(y, x, w, b, "linear_forward");
  const Index m = x.dim(0), k = x.dim(1), n = w.dim(0);
  if (b.present()) {
    parallel_for(m, [&](Index i) {
      for (Index j = 0; j < n; ++j) y.data[i * n + j] = b.data[j];
    });
  }
  // RowMode::stable: a token's output does not depend on how many tokens the batch holds.
  gemm<T>(Trans::no, Trans::yes, m, n, k, T(1), x.data, k, w.data, k, b.present() ? T(1) : T(0),
          y.data, n, RowMode::stable);
}

/// Adds the gradients of linear_forward: dx += dy W, dW += dy^T x, db += sum over rows of dy.
/// Any of dx, dW, db may be empty (not computed).
/// requires: the shapes of linear_forward; dy (M, N).
template <class T>
void linear_backward(View<const T, 2> dy, View<const Id<T>, 2> x, View<const Id<T>, 2> w,
                     View<Id<T>, 2> dx, View<Id<T>, 2> dw, View<Id<T>, 1> db) {
  detail::check_linear<T>(dy, x, w, View<const T, 1>(db), "linear_backward");
  const Index m = x.dim(0), k = x.dim(1), n = w.dim(0);
  hattn::detail::require((!dx.present() || dx.dims == x.dims) && (!dw.present() || dw.dims == w.dims),
                         "linear_backward", "gradient shape mismatch: dx ", dx.shape(), " for x ",
                         x.shape(), ", dW ", dw.shape(), " for W ", w.shape());
  if (dx.present()) gemm<T>(Trans::no, Trans::no, m, k, n, T(1), dy.data, n, w.data, k, T(1), dx.data, k);
  if (dw.present()) gemm<T>(Trans::yes, Trans::no, n, k, m, T(1), dy.data, n, x.data, k, T(1), dw.data, k);
  if (db.present()) linear_bias_backward<T>(dy, 0, db);
}

/// Tape node of a bias gradient over some columns of dy (see linear_bias_backward).
template <class T>
struct LinearBiasNode {
  View<const T, 2> dy;
  Index col0 = 0;
  View<T, 1> db;
  void backward() const { linear_bias_backward<T>(dy, col0, db); }
};

/// Tape node of linear: what linear_backward needs.
template <class T>
struct LinearNode {
  View<const T, 2> dy, x, w;
  View<T, 2> dx, dw;
  View<T, 1> db;
  void backward() const { linear_backward<T>(dy, x, w, dx, dw, db); }
};

/// Training-mode linear: runs linear_forward and, when `tape` is given, records the backward.
template <class T>
void linear(Tape* tape, Var<T, 2> y, Var<T, 2> x, Var<T, 2> w, Var<T, 1> b) {
  linear_forward<T>(y.value, x.value, w.value, b.value);
  if (tape) tape->record(LinearNode<T>{y.grad, x.value, w.value, x.grad, w.grad, b.grad});
}

}  // namespace hattn::ops
