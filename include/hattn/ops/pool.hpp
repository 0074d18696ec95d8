#pragma once
/// \file
/// Mean pooling of row blocks into summaries (SPEC.md "Variants", `summaries`): each of G blocks
/// of S rows becomes k summary rows, summary b the mean of rows [s_b, s_{b+1}) with
/// s_b = floor(b S / k), so the pooled blocks differ by at most one row when k does not divide S.

#include <algorithm>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

/// First row of summary `b` of `k` over a block of `rows` rows: floor(b * rows / k).
inline constexpr Index pool_start(Index b, Index rows, Index k) { return b * rows / k; }

namespace detail {

inline void check_pool(const char* op, Index groups, Index rows, Index cols, Index out_groups,
                       Index out_rows, Index out_cols) {
  hattn::detail::require(groups > 0 && rows > 0 && cols > 0 && out_rows > 0, op, "zero-sized dimension: x (",
                         groups, ", ", rows, ", ", cols, "), y (", out_groups, ", ", out_rows, ", ", out_cols, ")");
  hattn::detail::require(out_groups == groups && out_cols == cols && out_rows <= rows, op, "shape mismatch: x (",
                         groups, ", ", rows, ", ", cols, "), y (", out_groups, ", ", out_rows, ", ", out_cols,
                         ") (want y (G, k, C) with k <= S for x (G, S, C))");
}

}  // namespace detail

/// y[g, b] = mean of x[g, s_b .. s_{b+1}) for every block g and summary b < k: the rows are
/// summed in order, then divided by their count.
/// requires: x (G, S, C), y (G, k, C) with 1 <= k <= S; y overlaps no row of x.
/// ensures: every entry of y's (G, k, C) rows is written, nothing else.
/// Work: parallel_for over blocks, each writing only its own summaries: bitwise the same for any
/// thread count.
template <class T>
void mean_pool_forward(Rows<T> y, Rows<const Id<T>> x) {
  detail::check_pool("mean_pool_forward", x.groups, x.rows, x.cols, y.groups, y.rows, y.cols);
  const Index S = x.rows, k = y.rows, C = x.cols;
  parallel_for(x.groups, [&](Index g) {
    for (Index b = 0; b < k; ++b) {
      const Index r0 = pool_start(b, S, k), r1 = pool_start(b + 1, S, k);
      T* out = y.row(g, b);  // (C)
      std::copy(x.row(g, r0), x.row(g, r0) + C, out);
      for (Index r = r0 + 1; r < r1; ++r) {
        const T* in = x.row(g, r);  // (C)
        for (Index c = 0; c < C; ++c) out[c] += in[c];
      }
      const T n = T(r1 - r0);
      for (Index c = 0; c < C; ++c) out[c] /= n;
    }
  });
}

/// Adds the gradient of mean_pool_forward: dx[g, r] += dy[g, b] / (s_{b+1} - s_b) for the summary
/// b that covers row r.
/// requires: dy (G, k, C), dx (G, S, C) as in the forward pass; dx overlaps no row of dy.
/// ensures: dx holds its previous contents plus the gradient; nothing else is written.
template <class T>
void mean_pool_backward(Rows<const T> dy, Rows<T> dx) {
  detail::check_pool("mean_pool_backward", dx.groups, dx.rows, dx.cols, dy.groups, dy.rows, dy.cols);
  const Index S = dx.rows, k = dy.rows, C = dx.cols;
  parallel_for(dx.groups, [&](Index g) {
    for (Index b = 0; b < k; ++b) {
      const Index r0 = pool_start(b, S, k), r1 = pool_start(b + 1, S, k);
      const T n = T(r1 - r0);
      const T* grad = dy.row(g, b);  // (C)
      for (Index r = r0; r < r1; ++r) {
        T* out = dx.row(g, r);  // (C)
        for (Index c = 0; c < C; ++c) out[c] += grad[c] / n;
      }
    }
  });
}

/// Tape node of mean pooling: what mean_pool_backward needs.
template <class T>
struct MeanPoolNode {
  Rows<const T> dy;  // (G, k, C)
  Rows<T> dx;        // (G, S, C)
  void backward() const { mean_pool_backward<T>(dy, dx); }
};

/// Training-mode mean pooling: runs mean_pool_forward and, when `tape` is given and both
/// gradients are present, records the backward (which adds y.grad's contribution into x.grad).
template <class T>
void mean_pool(Tape* tape, RowsVar<T> y, RowsVar<T> x) {
  mean_pool_forward<T>(y.value, x.value);
  if (tape && y.grad.data && x.grad.data) tape->record(MeanPoolNode<T>{y.grad, x.grad});
}

}  // namespace hattn::ops
