#pragma once
/// \file
/// Var and RowsVar: a tensor together with its gradient, the units the training-mode op wrappers take.

#include "hattn/core/tensor.hpp"

namespace hattn {

/// A value and its gradient buffer of the same shape. `grad` is empty when no gradient is wanted
/// (the fixed position table, inference). Backward passes add into `grad`; they never overwrite it.
template <class T, int R>
struct Var {
  View<T, R> value;  ///< forward value
  View<T, R> grad;   ///< dLoss/dvalue, accumulated; empty if not needed
};

/// Strided row blocks (hattn::Rows) and their gradient in the same layout, the unit attention
/// takes: its operands are chunks, sibling halves or column slices of fused buffers.
template <class T>
struct RowsVar {
  Rows<T> value;  ///< forward value
  Rows<T> grad;   ///< dLoss/dvalue, accumulated; empty if not needed
};

}  // namespace hattn
