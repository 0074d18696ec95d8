#pragma once
/// \file
/// Token embedding plus the fixed sinusoid position table (SPEC step 1): x[b, t] = E[ids[b, t]] + P[t].
/// E (V, d) is learned; P (S, d) is filled once by sinusoid_table and never trained.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

namespace detail {

/// Rows of x per forward task: a constant, so the partition never depends on the thread count.
inline constexpr Index embedding_row_block = 32;
/// Columns of dE per backward task; each task walks every (b, t) row in order.
inline constexpr Index embedding_col_block = 64;

/// Throws unless every id lies in [0, vocab); names the first offender in (b, t) order.
inline void check_token_ids(View<const std::int32_t, 2> ids, Index vocab, const char* op) {
  const Index rows = ids.dim(0), cols = ids.dim(1);
  for (Index b = 0; b < rows; ++b)
    for (Index t = 0; t < cols; ++t) {
      const std::int32_t id = ids.data[b * cols + t];
      hattn::detail::require(id >= 0 && Index(id) < vocab, op, "token id ", id, " at (b, t) = (", b,
                             ", ", t, ") is outside the vocabulary [0, ", vocab, ")");
    }
}

}  // namespace detail

/// Fills the fixed position table: P[k, 2i] = sin(k / 10000^(2i/d)), P[k, 2i+1] = cos(k / 10000^(2i/d)).
/// Angles and their sines are computed in double and rounded once to T, so the float table is the
/// double table correctly rounded.
/// requires: P (S, d) with S, d > 0 and d even (columns come in sin/cos pairs).
/// ensures: every entry of P is written.
template <class T>
void sinusoid_table(View<T, 2> P) {
  hattn::detail::require(P.dim(0) > 0 && P.dim(1) > 0, "sinusoid_table",
                         "zero-sized dimension: P ", P.shape());
  hattn::detail::require(P.dim(1) % 2 == 0, "sinusoid_table",
                         "d must be even (columns 2i and 2i+1 hold sin and cos), got P ", P.shape());
  const Index S = P.dim(0), d = P.dim(1);
  parallel_for((S + detail::embedding_row_block - 1) / detail::embedding_row_block, [&](Index task) {
    const Index k0 = task * detail::embedding_row_block;
    const Index k1 = std::min(S, k0 + detail::embedding_row_block);
    for (Index k = k0; k < k1; ++k) {
      T* row = P.data + k * d;  // (d)
      for (Index i = 0; 2 * i < d; ++i) {
        const double angle = double(k) / std::pow(10000.0, double(2 * i) / double(d));
        row[2 * i] = T(std::sin(angle));
        row[2 * i + 1] = T(std::cos(angle));
      }
    }
  });
}

namespace detail {

template <class T>
void check_embedding(View<const T, 3> x, View<const std::int32_t, 2> ids, View<const T, 2> E,
                     View<const T, 2> P, const char* op) {
  hattn::detail::require(x.size() > 0 && ids.size() > 0 && E.size() > 0 && P.size() > 0, op,
                         "zero-sized dimension: x ", x.shape(), ", ids ", ids.shape(), ", E ",
                         E.shape(), ", P ", P.shape());
  hattn::detail::require(x.dim(0) == ids.dim(0) && x.dim(1) == ids.dim(1) && x.dim(2) == E.dim(1) &&
                             P.dim(1) == E.dim(1),
                         op, "shape mismatch: x ", x.shape(), ", ids ", ids.shape(), ", E ", E.shape(),
                         ", P ", P.shape(), " (want x (B, T, d), ids (B, T), E (V, d), P (S, d))");
  hattn::detail::require(ids.dim(1) <= P.dim(0), op, "sequence of ", ids.dim(1),
                         " tokens exceeds the position table's ", P.dim(0), " rows");
}

}  // namespace detail

/// x[b, t] = E[ids[b, t]] + P[t]. Every input is validated before anything is written, so a
/// rejected call leaves x untouched.
/// requires: x (B, T, d), ids (B, T), E (V, d), P (S, d); B, T, d, V, S > 0; T <= S; every id in [0, V).
/// ensures: every entry of x is written.
template <class T>
void embedding_forward(View<T, 3> x, View<const std::int32_t, 2> ids, View<const Id<T>, 2> E,
                       View<const Id<T>, 2> P) {
  detail::check_embedding<T>(x, ids, E, P, "embedding_forward");
  detail::check_token_ids(ids, E.dim(0), "embedding_forward");
  const Index Tn = ids.dim(1), d = E.dim(1), rows = ids.size();
  parallel_for((rows + detail::embedding_row_block - 1) / detail::embedding_row_block, [&](Index task) {
    const Index r0 = task * detail::embedding_row_block;
    const Index r1 = std::min(rows, r0 + detail::embedding_row_block);
    for (Index r = r0; r < r1; ++r) {
      const T* e = E.data + Index(ids.data[r]) * d;  // (d)
      const T* p = P.data + (r % Tn) * d;             // (d)
      T* out = x.data + r * d;                        // (d)
      for (Index j = 0; j < d; ++j) out[j] = e[j] + p[j];
    }
  });
}

/// Adds the gradient of embedding_forward into dE: dE[ids[b, t]] += dx[b, t]. Repeated ids
/// accumulate in (b, t) order, whatever the thread count (tasks own fixed blocks of columns).
/// P is fixed, so it gets no gradient. dE may be empty (nothing computed).
/// requires: dx (B, T, d), ids (B, T), dE (V, d); every id in [0, V). Nothing is written on error.
template <class T>
void embedding_backward(View<const T, 3> dx, View<const std::int32_t, 2> ids, View<Id<T>, 2> dE) {
  constexpr const char* op = "embedding_backward";
  hattn::detail::require(dx.size() > 0 && ids.size() > 0, op,
                         "zero-sized dimension: dx ", dx.shape(), ", ids ", ids.shape());
  hattn::detail::require(dx.dim(0) == ids.dim(0) && dx.dim(1) == ids.dim(1) &&
                             (!dE.present() || dE.dim(1) == dx.dim(2)),
                         op, "shape mismatch: dx ", dx.shape(), ", ids ", ids.shape(), ", dE ",
                         dE.present() ? dE.shape() : "none", " (want dx (B, T, d), ids (B, T), dE (V, d))");
  if (!dE.present()) return;
  hattn::detail::require(dE.dim(0) > 0, op, "zero-sized dimension: dE ", dE.shape());
  detail::check_token_ids(ids, dE.dim(0), op);
  const Index d = dx.dim(2), rows = ids.size();
  constexpr Index block = detail::embedding_col_block;
  parallel_for((d + block - 1) / block, [&](Index task) {
    const Index j0 = task * block, j1 = std::min(d, j0 + block);
    for (Index r = 0; r < rows; ++r) {
      const T* g = dx.data + r * d;               // (d)
      T* acc = dE.data + Index(ids.data[r]) * d;  // (d)
      for (Index j = j0; j < j1; ++j) acc[j] += g[j];
    }
  });
}

/// Tape node of embedding: what embedding_backward needs. `ids` must outlive the backward pass.
template <class T>
struct EmbeddingNode {
  View<const T, 3> dx;              // (B, T, d)
  View<const std::int32_t, 2> ids;  // (B, T)
  View<T, 2> dE;                    // (V, d)
  void backward() const { embedding_backward<T>(dx, ids, dE); }
};

/// Training-mode embedding: runs embedding_forward into x.value and, when `tape` is given, records
/// the backward pass that adds x.grad into E.grad. P is the fixed position table (no gradient).
/// `ids` must stay alive and unchanged until the tape's backward has run.
template <class T>
void embedding(Tape* tape, Var<T, 3> x, View<const std::int32_t, 2> ids, Var<T, 2> E,
               View<const Id<T>, 2> P) {
  embedding_forward<T>(x.value, ids, E.value, P);
  if (tape) tape->record(EmbeddingNode<T>{x.grad, ids, E.grad});
}

}  // namespace hattn::ops
