#pragma once
/// \file
/// Copies between strided row blocks: how the tree takes the left and right halves of sibling
/// pairs into contiguous buffers (so their projections are single GEMMs) and writes a level's
/// output back as pairs.

#include <algorithm>
#include <cstring>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

namespace detail {
template <class T>
void check_copy_rows(Rows<const T> dst, Rows<const T> src, const char* op) {
  hattn::detail::require(src.groups > 0 && src.rows > 0 && src.cols > 0, op,
                         "zero-sized dimension: src ", src.shape());
  hattn::detail::require(dst.groups == src.groups && dst.rows == src.rows && dst.cols == src.cols, op,
                         "shape mismatch: dst ", dst.shape(), ", src ", src.shape(),
                         " (want equal (groups, rows, cols))");
}
}  // namespace detail

/// dst = src, block by block and row by row.
/// requires: dst and src of equal (groups, rows, cols), all > 0; dst's rows overlap neither each
///   other nor src's.
/// ensures: the (groups, rows, cols) entries of dst are written, nothing else in its buffer.
template <class T>
void copy_rows_forward(Rows<T> dst, Rows<const Id<T>> src) {
  detail::check_copy_rows<T>(dst, src, "copy_rows_forward");
  parallel_for(src.groups, [&](Index g) {
    for (Index r = 0; r < src.rows; ++r)
      std::memcpy(dst.row(g, r), src.row(g, r), std::size_t(src.cols) * sizeof(T));
  });
}

/// Adds the gradient of copy_rows_forward: dsrc += ddst (dsrc may be empty).
/// requires: ddst and dsrc of equal (groups, rows, cols); dsrc's rows do not overlap each other.
template <class T>
void copy_rows_backward(Rows<const T> ddst, Rows<Id<T>> dsrc) {
  if (dsrc.data == nullptr) return;
  detail::check_copy_rows<T>(ddst, dsrc, "copy_rows_backward");
  parallel_for(ddst.groups, [&](Index g) {
    for (Index r = 0; r < ddst.rows; ++r) {
      const T* in = ddst.row(g, r);  // (cols)
      T* out = dsrc.row(g, r);       // (cols)
      for (Index c = 0; c < ddst.cols; ++c) out[c] += in[c];
    }
  });
}

/// Tape node of copy_rows.
template <class T>
struct CopyRowsNode {
  Rows<const T> ddst;
  Rows<T> dsrc;
  void backward() const { copy_rows_backward<T>(ddst, dsrc); }
};

/// Records copy_rows's backward, when `tape` is given, without running its forward: for a
/// destination that already holds the copy (a recomputation that kept it).
template <class T>
void record_copy_rows(Tape* tape, RowsVar<T> dst, RowsVar<T> src) {
  if (tape && dst.grad.data != nullptr) tape->record(CopyRowsNode<T>{dst.grad, src.grad});
}

/// Training-mode copy_rows: runs the forward and, when `tape` is given, records the backward.
template <class T>
void copy_rows(Tape* tape, RowsVar<T> dst, RowsVar<T> src) {
  copy_rows_forward<T>(dst.value, src.value);
  record_copy_rows(tape, dst, src);
}

}  // namespace hattn::ops
