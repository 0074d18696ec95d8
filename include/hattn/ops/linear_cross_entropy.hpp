#pragma once
/// \file
/// The head and the loss fused: mean cross-entropy of y = x W^T + b against integer targets,
/// computed over fixed chunks of rows so that the (M, N) logits either stay stored (one buffer
/// that the forward turns into their softmax and the backward into their gradient) or are never
/// stored whole (each chunk is recomputed in the backward pass into one (R, N) scratch buffer).
/// Both ways give the same bits. Each row is exponentiated once, in the forward pass.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/blas.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/ops/cross_entropy.hpp"
#include "hattn/ops/linear.hpp"
#include "hattn/ops/softmax.hpp"

namespace hattn::ops {

/// Logit elements per chunk that linear_cross_entropy_chunk aims at (160 MiB of floats): 768 rows
/// of the GPT-2 vocabulary. Smaller chunks save memory when the logits are recomputed but cost
/// time either way (the gradient products of each chunk pack the (N, K) weight again).
inline constexpr Index linear_cross_entropy_chunk_elements = Index{5} << 23;

/// Rows per chunk of linear_cross_entropy for `n` classes: about
/// linear_cross_entropy_chunk_elements / n, a multiple of gemm_row_unit (so the head's products
/// run without padding), at least gemm_row_unit. Depends on n only: the chunking, and with it
/// every bit of the gradients, is the same whether the logits are stored or recomputed.
inline Index linear_cross_entropy_chunk(Index n) {
  const Index unit = hattn::detail::gemm_row_unit;
  return std::max(unit, linear_cross_entropy_chunk_elements / std::max<Index>(n, 1) / unit * unit);
}

namespace detail {

/// Checks the arguments of linear_cross_entropy_forward / _backward and returns the number of rows
/// whose target is not ignore_index. Nothing has been computed when it throws.
template <class T>
Index check_linear_cross_entropy(View<const T, 2> x, View<const T, 2> w, View<const T, 1> b,
                                 View<const std::int32_t, 1> targets, View<const T, 1> lse,
                                 View<const T, 2> logits, Index chunk, const char* op) {
  hattn::detail::require(x.dim(0) > 0 && x.dim(1) > 0 && w.dim(0) > 0, op,
                         "zero-sized dimension: x ", x.shape(), ", W ", w.shape());
  const Index m = x.dim(0), n = w.dim(0);
  hattn::detail::require(chunk > 0, op, "chunk rows must be positive, got ", chunk);
  const Index rows = std::min(m, chunk);
  hattn::detail::require(
      x.dim(1) == w.dim(1) && (!b.present() || b.dim(0) == n) && targets.dim(0) == m &&
          lse.dim(0) == m && logits.dim(1) == n && (logits.dim(0) == m || logits.dim(0) == rows),
      op, "shape mismatch: x ", x.shape(), ", W ", w.shape(), ", b ", b.present() ? b.shape() : "none",
      ", targets ", targets.shape(), ", lse ", lse.shape(), ", logits ", logits.shape(),
      " (want x (M, K), W (N, K), b (N) or none, targets (M), lse (M), logits (M, N) or (min(M, ",
      chunk, "), N))");
  return count_targets(targets, n, op);
}

/// Where the logits of rows [r0, r0 + rows) live: their place in a stored (M, N) buffer, or the
/// start of a (chunk, N) scratch buffer.
template <class T>
View<T, 2> logit_chunk(View<T, 2> logits, Index m, Index r0, Index rows) {
  const Index n = logits.dim(1);
  return View<T, 2>(logits.data + (logits.dim(0) == m ? r0 * n : 0), rows, n);
}

/// One row of linear_cross_entropy_forward: the loss and log-sum-exp of cross_entropy_row, bit for
/// bit (the same maximum, exponentials and double sum), and the row's logits `y` (V) replaced by
/// their softmax exp(y - max) * (1 / sum), as softmax_forward computes it. Returns the row's loss
/// in double, 0 when target is ignore_index.
template <class T>
double softmax_cross_entropy_row(T* y, Index v, std::int32_t target, T* lse) {
  const T top = ConstRow<T>(y, v).maxCoeff();
  const T picked = target == ignore_index ? T(0) : y[target];  // read before y is overwritten
  exp_shifted(y, y, v, top);                                   // (V) exp(y - top), in place
  const double sum = sum_double(y, v);
  const double log_sum = std::log(sum);
  *lse = static_cast<T>(double(top) + log_sum);
  Row<T>(y, v) *= static_cast<T>(1.0 / sum);
  return target == ignore_index ? 0.0 : (double(top) - double(picked)) + log_sum;
}

/// One row of linear_cross_entropy_backward: replaces the softmax `p` (V) by
/// scale * (p - onehot(target)), or by zeros when target is ignore_index.
template <class T>
void softmax_cross_entropy_row_grad(T* p, Index v, std::int32_t target, T scale) {
  if (target == ignore_index) {
    std::fill(p, p + v, T(0));
    return;
  }
  for (Index j = 0; j < v; ++j) p[j] = T(0) + scale * p[j];  // as 0 + scale * p in cross_entropy_backward
  p[target] -= scale;
}

}  // namespace detail

/// Mean cross-entropy of the logits y = x W^T + b, as cross_entropy_forward(linear_forward(x, W,
/// b)), and bitwise equal to it (loss and lse) when chunk is a multiple of gemm_row_unit (as from
/// linear_cross_entropy_chunk: a row's bits then keep their position in the BLAS kernel):
/// returns (1 / n) sum over rows i with targets[i] != ignore_index of (lse[i] - y[i, targets[i]]),
/// and writes every row's log-sum-exp to lse. Rows go in chunks of
/// `chunk` rows. `logits` is either (M, N), and then holds the softmax of every row afterwards
/// (softmax_cross_entropy_row), or (min(M, chunk), N) scratch that ends up holding the last chunk's.
/// Validation comes first and nothing is written when it fails.
/// requires: x (M, K), W (N, K), b (N) or empty, targets (M) in [0, N) or ignore_index with at least
///           one not ignored, lse (M), logits (M, N) or (min(M, chunk), N), chunk > 0; logits finite.
template <class T>
T linear_cross_entropy_forward(View<const Id<T>, 2> x, View<const Id<T>, 2> w, View<const Id<T>, 1> b,
                               View<const std::int32_t, 1> targets, View<Id<T>, 1> lse,
                               View<Id<T>, 2> logits, Index chunk) {
  const Index count = detail::check_linear_cross_entropy<T>(x, w, b, targets, lse, logits, chunk,
                                                            "linear_cross_entropy_forward");
  const Index m = x.dim(0), k = x.dim(1), n = w.dim(0);
  std::vector<double> row_loss(static_cast<std::size_t>(m), 0.0);  // (M); 0 for ignored rows
  for (Index r0 = 0; r0 < m; r0 += chunk) {
    const Index rows = std::min(chunk, m - r0);
    const View<T, 2> y = detail::logit_chunk(logits, m, r0, rows);  // (rows, N)
    linear_forward<T>(y, View<const T, 2>(x.data + r0 * k, rows, k), w, b);
    detail::softmax_for_rows(rows, n, [&](Index i) {
      row_loss[static_cast<std::size_t>(r0 + i)] =
          detail::softmax_cross_entropy_row(y.data + i * n, n, targets.data[r0 + i], lse.data + r0 + i);
    });
  }
  double total = 0;
  for (double l : row_loss) total += l;  // row order, as cross_entropy_forward
  return static_cast<T>(total / double(count));
}

/// Adds dloss times the gradient of linear_cross_entropy_forward: per chunk of rows, the logits'
/// gradient G = (dloss / n) (softmax - onehot) (0 in ignored rows) replaces the chunk's softmax,
/// then dx += G W, dW += G^T x, db += column sums of G, chunk after chunk in row order. A stored
/// (M, N) `logits` holds the softmax as the forward pass left it and is consumed (holds G
/// afterwards); a (min(M, chunk), N) one is scratch into which each chunk's logits and their
/// softmax are recomputed (bitwise as in the forward pass, the head's rows being independent of
/// each other). Either way the gradients are bitwise the same. dx, dW, db may each be empty (not
/// computed).
/// requires: the arguments of linear_cross_entropy_forward with the same chunk, lse as it wrote
///           it; dx (M, K), dW (N, K), db (N) or empty.
template <class T>
void linear_cross_entropy_backward(T dloss, View<const Id<T>, 2> x, View<const Id<T>, 2> w,
                                   View<const Id<T>, 1> b, View<const std::int32_t, 1> targets,
                                   View<const Id<T>, 1> lse, View<Id<T>, 2> logits, Index chunk,
                                   View<Id<T>, 2> dx, View<Id<T>, 2> dw, View<Id<T>, 1> db) {
  const Index count = detail::check_linear_cross_entropy<T>(x, w, b, targets, lse, logits, chunk,
                                                            "linear_cross_entropy_backward");
  const Index m = x.dim(0), k = x.dim(1), n = w.dim(0);
  hattn::detail::require((!dx.present() || dx.dims == x.dims) && (!dw.present() || dw.dims == w.dims) &&
                             (!db.present() || db.dim(0) == n),
                         "linear_cross_entropy_backward", "gradient shape mismatch: dx ", dx.shape(),
                         " for x ", x.shape(), ", dW ", dw.shape(), " for W ", w.shape(), ", db ",
                         db.present() ? db.shape() : "none");
  const bool stored = logits.dim(0) == m;
  const T scale = static_cast<T>(double(dloss) / double(count));
  for (Index r0 = 0; r0 < m; r0 += chunk) {
    const Index rows = std::min(chunk, m - r0);
    const View<const T, 2> xc(x.data + r0 * k, rows, k);  // (rows, K)
    const View<T, 2> g = detail::logit_chunk(logits, m, r0, rows);  // (rows, N) logits, then G
    if (!stored) linear_forward<T>(g, xc, w, b);
    detail::softmax_for_rows(rows, n, [&](Index i) {
      T* row = g.data + i * n;  // (N) logits (recomputed) or their softmax (stored)
      const std::int32_t target = targets.data[r0 + i];
      if (!stored) {
        T row_lse;  // equal to lse[r0 + i]: the same row computed the same way
        detail::softmax_cross_entropy_row(row, n, target, &row_lse);
      }
      detail::softmax_cross_entropy_row_grad(row, n, target, scale);
    });
    linear_backward<T>(View<const T, 2>(g), xc, w,
                       dx.present() ? View<T, 2>(dx.data + r0 * k, rows, k) : View<T, 2>(), dw, db);
  }
}

/// Tape node of linear_cross_entropy; reads dloss, when backward runs, from the loss's
/// one-element gradient (as CrossEntropyNode).
template <class T>
struct LinearCrossEntropyNode {
  View<const T, 1> dloss;               ///< (1)
  View<const T, 2> x, w;                ///< (M, K), (N, K)
  View<const T, 1> b;                   ///< (N) or empty
  View<const std::int32_t, 1> targets;  ///< (M)
  View<const T, 1> lse;                 ///< (M)
  View<T, 2> logits;                    ///< (M, N) stored or (min(M, chunk), N) scratch
  Index chunk = 0;                      ///< rows per chunk
  View<T, 2> dx, dw;                    ///< (M, K), (N, K) added to; may be empty
  View<T, 1> db;                        ///< (N) added to; may be empty
  void backward() const {
    linear_cross_entropy_backward<T>(dloss.data[0], x, w, b, targets, lse, logits, chunk, dx, dw, db);
  }
};

/// Training-mode fused head and loss: runs linear_cross_entropy_forward, writes the loss to
/// loss.value[0] and returns it; when `tape` is given, records the backward, which reads its
/// incoming gradient from loss.grad[0] (set it before Tape::backward(), as for cross_entropy).
/// requires: as linear_cross_entropy_forward; loss.value (1); loss.grad (1) when tape is given;
///           x.value, w, b, targets and lse unchanged, and a stored `logits` untouched, until the
///           backward has run.
template <class T>
T linear_cross_entropy(Tape* tape, Var<T, 1> loss, Var<T, 2> x, Var<T, 2> w, Var<T, 1> b,
                       View<const std::int32_t, 1> targets, View<Id<T>, 1> lse, View<Id<T>, 2> logits,
                       Index chunk) {
  hattn::detail::require(
      loss.value.present() && loss.value.dim(0) == 1 &&
          (!tape || (loss.grad.present() && loss.grad.dim(0) == 1)),
      "linear_cross_entropy", "the loss must be one element with a one-element gradient when recorded: "
      "value ", loss.value.present() ? loss.value.shape() : "none", ", grad ",
      loss.grad.present() ? loss.grad.shape() : "none");
  const T value = linear_cross_entropy_forward<T>(x.value, w.value, b.value, targets, lse, logits, chunk);
  loss.value.data[0] = value;
  if (tape)
    tape->record(LinearCrossEntropyNode<T>{loss.grad, x.value, w.value, b.value, targets, lse, logits,
                                           chunk, x.grad, w.grad, b.grad});
  return value;
}

}  // namespace hattn::ops
