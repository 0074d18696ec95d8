#pragma once
/// \file
/// Residual add over flat buffers: y = a + b. Callers flatten their tensors (View::matrix(), or a
/// pointer and the element count) into rank-1 views.

#include <algorithm>
#include <functional>
#include <utility>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

namespace detail {

/// Elements per parallel task of the residual add: a constant, so the partition never depends on
/// the threads.
inline constexpr Index residual_block = Index{1} << 14;

/// `g` (a gradient, when present) against `dy`: same size, and disjoint from it.
template <class T>
void check_residual_grad(View<const T, 1> g, View<const T, 1> dy, const char* name) {
  if (!g.present()) return;
  hattn::detail::require(g.dim(0) == dy.dim(0), "residual_backward", "gradient shape mismatch: ", name,
                         " ", g.shape(), " for dy ", dy.shape());
  // A gradient aliasing dy would add dy to itself before (or while) it is read.
  hattn::detail::require(disjoint<T>(g.data, dy.dim(0), dy.data, dy.dim(0)), "residual_backward", name,
                         " overlaps dy");
}

}  // namespace detail

/// y = a + b elementwise.
/// Aliasing: y may be a or b itself (in place, e.g. x += f(x)), and a may be b (y = 2a); any
/// other overlap between y and an input is rejected. In place is valid in training too, since
/// backward reads neither a nor b.
/// requires: a (n), b (n), y (n), n > 0.
/// ensures: every entry of y is written.
template <class T>
void residual_forward(View<T, 1> y, View<const Id<T>, 1> a, View<const Id<T>, 1> b) {
  hattn::detail::require(a.dim(0) > 0, "residual_forward", "zero-sized dimension: a ", a.shape());
  hattn::detail::require(y.dim(0) == a.dim(0) && b.dim(0) == a.dim(0), "residual_forward",
                         "shape mismatch: y ", y.shape(), ", a ", a.shape(), ", b ", b.shape(),
                         " (want equal sizes)");
  const Index n = a.dim(0);
  for (const auto& [in, name] : {std::pair{a.data, "a"}, std::pair{b.data, "b"}}) {
    // Entry i reads only a[i] and b[i], so in place is safe; a partial overlap would race.
    hattn::detail::require(y.data == in || disjoint<T>(y.data, n, in, n),
                           "residual_forward", "y overlaps ", name, " without being the same buffer");
  }
  parallel_for((n + detail::residual_block - 1) / detail::residual_block, [&](Index t) {
    const Index i0 = t * detail::residual_block, i1 = std::min(n, i0 + detail::residual_block);
    for (Index i = i0; i < i1; ++i) y.data[i] = a.data[i] + b.data[i];
  });
}

/// Adds the gradients of residual_forward: da += dy, db += dy. Either of da, db may be empty (not
/// computed); da may be db (for y = a + a: the buffer then receives 2 dy).
/// requires: dy (n), n > 0; da, db (n) or empty, each disjoint from dy.
template <class T>
void residual_backward(View<const T, 1> dy, View<Id<T>, 1> da, View<Id<T>, 1> db) {
  hattn::detail::require(dy.dim(0) > 0, "residual_backward", "zero-sized dimension: dy ", dy.shape());
  detail::check_residual_grad<T>(da, dy, "da");
  detail::check_residual_grad<T>(db, dy, "db");
  const Index n = dy.dim(0);
  parallel_for((n + detail::residual_block - 1) / detail::residual_block, [&](Index t) {
    const Index i0 = t * detail::residual_block, i1 = std::min(n, i0 + detail::residual_block);
    if (da.present())
      for (Index i = i0; i < i1; ++i) da.data[i] += dy.data[i];
    if (db.present())
      for (Index i = i0; i < i1; ++i) db.data[i] += dy.data[i];
  });
}

/// Tape node of the residual add: what residual_backward needs.
template <class T>
struct ResidualNode {
  View<const T, 1> dy;  // (n)
  View<T, 1> da, db;    // (n) or empty
  void backward() const { residual_backward<T>(dy, da, db); }
};

/// Training-mode residual add: runs residual_forward and, when `tape` is given, records the
/// backward. y.value may be a.value or b.value (in place); y.grad must differ from a.grad, b.grad.
template <class T>
void residual(Tape* tape, Var<T, 1> y, Var<T, 1> a, Var<T, 1> b) {
  residual_forward<T>(y.value, a.value, b.value);
  if (tape) tape->record(ResidualNode<T>{y.grad, a.grad, b.grad});
}

}  // namespace hattn::ops
