#pragma once
/// \file
/// Zero-padding and slicing of rows: the hierarchical attention pads (B, T, d) to (B, Tp, d) with
/// Tp - T zero rows at the end, and keeps only the first T rows of its (B, Tp, d) output.

#include <algorithm>
#include <functional>
#include <string>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

namespace detail {

/// Rows per parallel task of the row ops: a constant, so the partition never depends on the threads.
inline constexpr Index rows_block = 64;

/// The requires-clause of the row ops. `first` and `second` are the op's two views in argument
/// order; `first_long` says which of them has the Tp rows. Both nonzero in every extent, equal B
/// and d, T <= Tp, and disjoint (one is read while the other is written, in parallel).
template <class T>
void check_rows(View<const T, 3> first, View<const T, 3> second, bool first_long, const char* op,
                const char* first_name, const char* second_name) {
  const View<const T, 3>& lng = first_long ? first : second;
  const View<const T, 3>& shrt = first_long ? second : first;
  hattn::detail::require(first.size() > 0 && second.size() > 0, op, "zero-sized dimension: ",
                         first_name, " ", first.shape(), ", ", second_name, " ", second.shape());
  const std::string want_long = " (B, Tp, d)", want_short = " (B, T, d)";
  hattn::detail::require(lng.dim(0) == shrt.dim(0) && lng.dim(2) == shrt.dim(2) && shrt.dim(1) <= lng.dim(1),
                         op, "shape mismatch: ", first_name, " ", first.shape(), ", ", second_name,
                         " ", second.shape(), " (want ", first_name, first_long ? want_long : want_short,
                         ", ", second_name, first_long ? want_short : want_long, ", T <= Tp)");
  hattn::detail::require(disjoint<T>(first.data, first.size(), second.data, second.size()), op,
                         first_name, " overlaps ", second_name);
}

/// Calls `f(b, t, r)` for the rows r = b * rows + t, t < rows, of a (B, rows, d) tensor, in
/// parallel over fixed blocks of rows_block rows.
template <class F>
void for_each_row(Index batch, Index rows, F&& f) {
  const Index total = batch * rows;
  parallel_for((total + rows_block - 1) / rows_block, [&](Index task) {
    const Index r0 = task * rows_block, r1 = std::min(total, r0 + rows_block);
    for (Index r = r0; r < r1; ++r) f(r / rows, r % rows, r);
  });
}

}  // namespace detail

/// y = x followed by Tp - T zero rows per batch entry: y[:, :T] = x, y[:, T:] = 0.
/// requires: y (B, Tp, d), x (B, T, d), B, T, d > 0, T <= Tp; y and x disjoint.
/// ensures: every entry of y is written.
template <class T>
void pad_rows_forward(View<T, 3> y, View<const Id<T>, 3> x) {
  detail::check_rows<T>(y, x, true, "pad_rows_forward", "y", "x");
  const Index rows = x.dim(1), padded = y.dim(1), d = x.dim(2);
  detail::for_each_row(x.dim(0), padded, [&](Index b, Index t, Index r) {
    T* out = y.data + r * d;  // (d)
    if (t < rows) {
      const T* in = x.data + (b * rows + t) * d;  // (d)
      std::copy(in, in + d, out);
    } else {
      std::fill(out, out + d, T(0));
    }
  });
}

/// Adds the gradient of pad_rows_forward: dx += dy[:, :T]; the padding rows' gradient is dropped.
/// dx may be empty (nothing to do).
/// requires: dy (B, Tp, d), dx (B, T, d), B, T, d > 0, T <= Tp; dy and dx disjoint.
template <class T>
void pad_rows_backward(View<const T, 3> dy, View<Id<T>, 3> dx) {
  if (!dx.present()) return;
  detail::check_rows<T>(dy, dx, true, "pad_rows_backward", "dy", "dx");
  const Index rows = dx.dim(1), padded = dy.dim(1), d = dx.dim(2);
  detail::for_each_row(dx.dim(0), rows, [&](Index b, Index t, Index r) {
    const T* g = dy.data + (b * padded + t) * d;  // (d)
    T* out = dx.data + r * d;                     // (d)
    for (Index j = 0; j < d; ++j) out[j] += g[j];
  });
}

/// Tape node of pad_rows: what pad_rows_backward needs.
template <class T>
struct PadRowsNode {
  View<const T, 3> dy;  // (B, Tp, d)
  View<T, 3> dx;        // (B, T, d) or empty
  void backward() const { pad_rows_backward<T>(dy, dx); }
};

/// Training-mode pad_rows: runs pad_rows_forward and, when `tape` is given, records the backward.
template <class T>
void pad_rows(Tape* tape, Var<T, 3> y, Var<T, 3> x) {
  pad_rows_forward<T>(y.value, x.value);
  if (tape) tape->record(PadRowsNode<T>{y.grad, x.grad});
}

/// y = x[:, :T], the first T of the Tp rows of each batch entry.
/// requires: y (B, T, d), x (B, Tp, d), B, T, d > 0, T <= Tp; y and x disjoint.
/// ensures: every entry of y is written.
template <class T>
void slice_rows_forward(View<T, 3> y, View<const Id<T>, 3> x) {
  detail::check_rows<T>(y, x, false, "slice_rows_forward", "y", "x");
  const Index rows = y.dim(1), padded = x.dim(1), d = y.dim(2);
  detail::for_each_row(y.dim(0), rows, [&](Index b, Index t, Index r) {
    const T* in = x.data + (b * padded + t) * d;  // (d)
    std::copy(in, in + d, y.data + r * d);
  });
}

/// Adds the gradient of slice_rows_forward: dx[:, :T] += dy; rows T..Tp-1 of dx are left as they
/// are (they receive nothing). dx may be empty (nothing to do).
/// requires: dy (B, T, d), dx (B, Tp, d), B, T, d > 0, T <= Tp; dy and dx disjoint.
template <class T>
void slice_rows_backward(View<const T, 3> dy, View<Id<T>, 3> dx) {
  if (!dx.present()) return;
  detail::check_rows<T>(dy, dx, false, "slice_rows_backward", "dy", "dx");
  const Index rows = dy.dim(1), padded = dx.dim(1), d = dy.dim(2);
  detail::for_each_row(dy.dim(0), rows, [&](Index b, Index t, Index r) {
    const T* g = dy.data + r * d;              // (d)
    T* out = dx.data + (b * padded + t) * d;  // (d)
    for (Index j = 0; j < d; ++j) out[j] += g[j];
  });
}

/// Tape node of slice_rows: what slice_rows_backward needs.
template <class T>
struct SliceRowsNode {
  View<const T, 3> dy;  // (B, T, d)
  View<T, 3> dx;        // (B, Tp, d) or empty
  void backward() const { slice_rows_backward<T>(dy, dx); }
};

/// Training-mode slice_rows: runs slice_rows_forward and, when `tape` is given, records the backward.
template <class T>
void slice_rows(Tape* tape, Var<T, 3> y, Var<T, 3> x) {
  slice_rows_forward<T>(y.value, x.value);
  if (tape) tape->record(SliceRowsNode<T>{y.grad, x.grad});
}

}  // namespace hattn::ops
