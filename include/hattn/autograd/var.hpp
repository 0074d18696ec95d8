#pragma once
/// \file
/// Var: a tensor together with its gradient, the unit the training-mode op wrappers take.

#include "hattn/core/tensor.hpp"

namespace hattn {

/// A value and its gradient buffer of the same shape. `grad` is empty when no gradient is wanted
/// (the fixed position table, inference). Backward passes add into `grad`; they never overwrite it.
template <class T, int R>
struct Var {
  View<T, R> value;  ///< forward value
  View<T, R> grad;   ///< dLoss/dvalue, accumulated; empty if not needed
};

}  // namespace hattn
