#pragma once
/// \file
/// LayerNorm over the last dimension, as PyTorch's nn.LayerNorm(d) with its defaults:
/// y = (x - mean) / sqrt(var + eps) * w + b, biased variance (divided by d), eps = 1e-5, affine.

#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/core/vector_math.hpp"

namespace hattn::ops {

/// The epsilon added to the variance, PyTorch's default.
inline constexpr double layernorm_eps = 1e-5;

namespace detail {

/// Rows per task of the row-parallel loops: a constant, so the partition never depends on the
/// thread count.
inline constexpr Index layernorm_row_block = 16;
/// Columns per task of the dw / db reductions; each task sums every row in order.
inline constexpr Index layernorm_col_block = 64;

/// Accumulator of the per-row sums: double for float and double rows, so statistics of float
/// activations carry no float rounding before their final store.
template <class T>
using LayerNormAcc = std::common_type_t<T, double>;

}  // namespace detail

/// y = (x - mean) * rstd * w + b row by row, saving each row's mean and rstd = 1 / sqrt(var + eps)
/// for the backward pass. The statistics take two passes over the row (the mean, then the mean
/// squared deviation from it), both accumulated in double (four interleaved partial sums,
/// sum_double_of), so rows with a large common offset
/// keep their variance; y is formed from the double statistics and rounded once to T.
/// requires: x (M, d), w (d), b (d), y (M, d), mean (M), rstd (M); M, d > 0.
/// ensures: every entry of y, mean and rstd is written.
template <class T>
void layernorm_forward(View<T, 2> y, View<T, 1> mean, View<T, 1> rstd, View<const Id<T>, 2> x,
                       View<const Id<T>, 1> w, View<const Id<T>, 1> b) {
  constexpr const char* op = "layernorm_forward";
  hattn::detail::require(x.dim(0) > 0 && x.dim(1) > 0, op, "zero-sized dimension: x ", x.shape());
  const Index M = x.dim(0), d = x.dim(1);
  hattn::detail::require(y.dims == x.dims && w.dim(0) == d && b.dim(0) == d && mean.dim(0) == M &&
                             rstd.dim(0) == M,
                         op, "shape mismatch: y ", y.shape(), ", mean ", mean.shape(), ", rstd ",
                         rstd.shape(), ", x ", x.shape(), ", w ", w.shape(), ", b ", b.shape(),
                         " (want y (M, d), mean (M), rstd (M), x (M, d), w (d), b (d))");
  using Acc = detail::LayerNormAcc<T>;
  constexpr Index block = detail::layernorm_row_block;
  parallel_for((M + block - 1) / block, [&](Index task) {
    const Index r0 = task * block, r1 = std::min(M, r0 + block);
    for (Index r = r0; r < r1; ++r) {
      const T* in = x.data + r * d;  // (d)
      T* out = y.data + r * d;       // (d)
      const Acc mu = sum_double(in, d) / Acc(d);
      const Acc sq = sum_double_of(d, [&](Index j) {
        const Acc c = Acc(in[j]) - mu;
        return c * c;
      });
      const Acc rs = Acc(1) / std::sqrt(sq / Acc(d) + Acc(layernorm_eps));
      for (Index j = 0; j < d; ++j)
        out[j] = T((Acc(in[j]) - mu) * rs * Acc(w.data[j]) + Acc(b.data[j]));
      mean.data[r] = T(mu);
      rstd.data[r] = T(rs);
    }
  });
}

/// Adds the gradients of layernorm_forward, with xhat = (x - mean) * rstd and g = dy * w:
///   dx += rstd * (g - mean_j(g) - xhat * mean_j(g * xhat)),  dw += sum_rows dy * xhat,
///   db += sum_rows dy.
/// Any of dx, dw, db may be empty (not computed). dx is parallel over fixed blocks of rows; dw and
/// db over fixed blocks of columns, each summing the rows in order, so the sums are the same for
/// any thread count. All sums are accumulated in double.
/// requires: the shapes of layernorm_forward; dy (M, d); mean and rstd as layernorm_forward saved
/// them for this x.
template <class T>
void layernorm_backward(View<const T, 2> dy, View<const Id<T>, 2> x, View<const Id<T>, 1> w,
                        View<const Id<T>, 1> mean, View<const Id<T>, 1> rstd, View<Id<T>, 2> dx,
                        View<Id<T>, 1> dw, View<Id<T>, 1> db) {
  constexpr const char* op = "layernorm_backward";
  hattn::detail::require(x.dim(0) > 0 && x.dim(1) > 0, op, "zero-sized dimension: x ", x.shape());
  const Index M = x.dim(0), d = x.dim(1);
  hattn::detail::require(dy.dims == x.dims && w.dim(0) == d && mean.dim(0) == M && rstd.dim(0) == M,
                         op, "shape mismatch: dy ", dy.shape(), ", x ", x.shape(), ", w ", w.shape(),
                         ", mean ", mean.shape(), ", rstd ", rstd.shape(),
                         " (want dy (M, d), x (M, d), w (d), mean (M), rstd (M))");
  hattn::detail::require((!dx.present() || dx.dims == x.dims) && (!dw.present() || dw.dims == w.dims) &&
                             (!db.present() || db.dims == w.dims),
                         op, "gradient shape mismatch: dx ", dx.present() ? dx.shape() : "none",
                         " for x ", x.shape(), ", dw ", dw.present() ? dw.shape() : "none", ", db ",
                         db.present() ? db.shape() : "none", " for w and b ", w.shape());
  using Acc = detail::LayerNormAcc<T>;
  if (dx.present()) {
    constexpr Index block = detail::layernorm_row_block;
    parallel_for((M + block - 1) / block, [&](Index task) {
      const Index r0 = task * block, r1 = std::min(M, r0 + block);
      for (Index r = r0; r < r1; ++r) {
        const T* in = x.data + r * d;  // (d)
        const T* g = dy.data + r * d;  // (d)
        T* out = dx.data + r * d;      // (d)
        const Acc mu = mean.data[r], rs = rstd.data[r];
        const Acc sum_g = sum_double_of(d, [&](Index j) { return Acc(g[j]) * Acc(w.data[j]); });
        const Acc sum_gx = sum_double_of(d, [&](Index j) {
          return Acc(g[j]) * Acc(w.data[j]) * (Acc(in[j]) - mu) * rs;
        });
        const Acc mean_g = sum_g / Acc(d), mean_gx = sum_gx / Acc(d);
        for (Index j = 0; j < d; ++j) {
          const Acc xhat = (Acc(in[j]) - mu) * rs;
          out[j] += T(rs * (Acc(g[j]) * Acc(w.data[j]) - mean_g - xhat * mean_gx));
        }
      }
    });
  }
  if (dw.present() || db.present()) {
    constexpr Index block = detail::layernorm_col_block;
    parallel_for((d + block - 1) / block, [&](Index task) {
      const Index j0 = task * block, j1 = std::min(d, j0 + block);
      std::array<Acc, block> sum_w{}, sum_b{};  // (j1 - j0) used
      for (Index r = 0; r < M; ++r) {
        const T* in = x.data + r * d;  // (d)
        const T* g = dy.data + r * d;  // (d)
        const Acc mu = mean.data[r], rs = rstd.data[r];
        for (Index j = j0; j < j1; ++j) {
          sum_w[j - j0] += Acc(g[j]) * ((Acc(in[j]) - mu) * rs);
          sum_b[j - j0] += Acc(g[j]);
        }
      }
      for (Index j = j0; j < j1; ++j) {
        if (dw.present()) dw.data[j] += T(sum_w[j - j0]);
        if (db.present()) db.data[j] += T(sum_b[j - j0]);
      }
    });
  }
}

/// Tape node of layernorm: what layernorm_backward needs.
template <class T>
struct LayerNormNode {
  View<const T, 2> dy, x;          // (M, d)
  View<const T, 1> w, mean, rstd;  // (d), (M), (M)
  View<T, 2> dx;                   // (M, d)
  View<T, 1> dw, db;               // (d)
  void backward() const { layernorm_backward<T>(dy, x, w, mean, rstd, dx, dw, db); }
};

/// Training-mode layernorm: runs layernorm_forward into y.value, mean and rstd (M) and, when
/// `tape` is given, records the backward pass that adds y.grad's contribution into x.grad, w.grad
/// and b.grad. x.value, w.value, mean and rstd must stay unchanged until the tape's backward has run.
template <class T>
void layernorm(Tape* tape, Var<T, 2> y, View<T, 1> mean, View<T, 1> rstd, Var<T, 2> x, Var<T, 1> w,
               Var<T, 1> b) {
  layernorm_forward<T>(y.value, mean, rstd, x.value, w.value, b.value);
  if (tape) tape->record(LayerNormNode<T>{y.grad, x.value, w.value, mean, rstd, x.grad, w.grad, b.grad});
}

}  // namespace hattn::ops
