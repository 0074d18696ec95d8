#pragma once
/// \file
/// Mean cross-entropy of logits against integer targets, the training objective: the mean over
/// every row whose target is not ignore_index (-100) of -log softmax(logits[i])[t_i].

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/core/vector_math.hpp"
#include "hattn/ops/softmax.hpp"

namespace hattn::ops {

/// The target that marks a row as ignored by the loss (PyTorch's default ignore_index): the
/// last position of each sequence, whose next token is unknown, and padding.
inline constexpr std::int32_t ignore_index = -100;

namespace detail {

/// A thread-local buffer of at least `n` elements (a row's scratch); grows once per thread.
template <class T>
T* row_buffer(Index n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < static_cast<std::size_t>(n)) buffer.resize(static_cast<std::size_t>(n));
  return buffer.data();
}

/// One row of cross_entropy_forward: writes the row's log-sum-exp to `*lse` and returns its loss
/// in double, (max - x[target]) + log(sum of exp(x - max)), or 0 when target is ignore_index.
/// The row's maximum is subtracted before exponentiating; the sum is accumulated in double.
template <class T>
double cross_entropy_row(const T* x, Index v, std::int32_t target, T* lse) {
  const T top = ConstRow<T>(x, v).maxCoeff();
  T* e = row_buffer<T>(v);  // (V) exp(x - top)
  exp_shifted(e, x, v, top);
  const double log_sum = std::log(sum_double(e, v));
  *lse = static_cast<T>(double(top) + log_sum);
  return target == ignore_index ? 0.0 : (double(top) - double(x[target])) + log_sum;
}

/// One row of cross_entropy_backward_in_place: replaces the logits `g` (V) by
/// scale * (softmax - onehot(target)), or by zeros when target is ignore_index.
template <class T>
void cross_entropy_row_grad_in_place(T* g, Index v, std::int32_t target, T lse, T scale) {
  if (target == ignore_index) {
    std::fill(g, g + v, T(0));
    return;
  }
  exp_shifted(g, g, v, lse);                                 // softmax, in place
  for (Index j = 0; j < v; ++j) g[j] = T(0) + scale * g[j];  // as 0 + scale * p in cross_entropy_backward
  g[target] -= scale;
}

/// Checks that every target is in [0, v) or ignore_index, at least one not ignored, and returns
/// how many are not ignored (the mean's denominator).
inline Index count_targets(View<const std::int32_t, 1> targets, Index v, const char* op) {
  Index count = 0;
  for (Index i = 0; i < targets.dim(0); ++i) {
    const std::int32_t t = targets.data[i];
    hattn::detail::require(t == ignore_index || (t >= 0 && t < v), op, "target ", t, " at row ", i,
                           " is outside [0, ", v, ") and is not the ignore index ", ignore_index);
    count += t != ignore_index;
  }
  hattn::detail::require(count > 0, op, "every target is the ignore index ", ignore_index, " (",
                         targets.dim(0), " rows), so the mean loss over no targets is undefined");
  return count;
}

/// Checks shapes and targets of cross_entropy_forward / _backward and returns the number of rows
/// whose target is not ignore_index. Nothing has been computed when it throws.
template <class T>
Index check_cross_entropy(View<const T, 2> logits, View<const std::int32_t, 1> targets,
                          View<const T, 1> lse, const View<T, 2>* dlogits, const char* op) {
  hattn::detail::require(logits.dim(0) > 0 && logits.dim(1) > 0, op,
                         "zero-sized dimension: logits ", logits.shape());
  const Index m = logits.dim(0), v = logits.dim(1);
  const bool dlogits_ok = !dlogits || !dlogits->present() || dlogits->dims == logits.dims;
  hattn::detail::require(
      targets.dim(0) == m && lse.dim(0) == m && dlogits_ok, op, "shape mismatch: logits ",
      logits.shape(), ", targets ", targets.shape(), ", lse ", lse.shape(),
      dlogits ? ", dlogits " : "", dlogits ? (dlogits->present() ? dlogits->shape() : "none") : "",
      dlogits ? " (want logits (M, V), targets (M), lse (M), dlogits (M, V) or none)"
              : " (want logits (M, V), targets (M), lse (M))");
  return count_targets(targets, v, op);
}

}  // namespace detail

/// Mean cross-entropy: returns (1 / n) * sum over rows i with targets[i] != ignore_index of
/// (lse[i] - logits[i, targets[i]]), n the number of such rows, and stores the log-sum-exp of every
/// row, lse[i] = log sum_j exp(logits[i, j]), for cross_entropy_backward.
/// Each row's maximum is subtracted before exponentiating (huge logits do not overflow) and its
/// loss is computed as (max - logit of the target) + log(sum of exp) in double, so it does not
/// lose the digits that the rounded lse[i] would. Rows are computed in parallel; their losses are
/// then summed in row order in double, so the result is bitwise the same for any thread count.
/// Ignored rows do not enter the loss, but their lse is stored too.
/// Validation comes first and nothing is written when it fails (unlike PyTorch, which returns NaN
/// when every target is ignored, this refuses).
/// requires: logits (M, V), targets (M), lse (M); M, V > 0; every target in [0, V) or equal to
///           ignore_index, at least one not ignore_index; logits finite.
/// ensures: every entry of lse is written.
template <class T>
T cross_entropy_forward(View<const T, 2> logits, View<const std::int32_t, 1> targets,
                        View<Id<T>, 1> lse) {
  const Index count = detail::check_cross_entropy<T>(logits, targets, lse, nullptr,
                                                     "cross_entropy_forward");
  const Index m = logits.dim(0), v = logits.dim(1);
  std::vector<double> row_loss(static_cast<std::size_t>(m), 0.0);  // (M); 0 for ignored rows
  detail::softmax_for_rows(m, v, [&](Index i) {
    row_loss[static_cast<std::size_t>(i)] =
        detail::cross_entropy_row(logits.data + i * v, v, targets.data[i], lse.data + i);
  });
  double total = 0;
  for (double l : row_loss) total += l;
  return static_cast<T>(total / double(count));
}

/// Adds the gradient of cross_entropy_forward scaled by dloss:
/// dlogits[i, j] += (dloss / n) * (softmax(logits[i])[j] - [j == targets[i]]) for every row whose
/// target is not ignore_index; ignored rows get nothing. The softmax is recomputed from logits
/// and lse as exp(logits[i, j] - lse[i]): no second (M, V) tensor is ever stored. dlogits may be
/// empty (nothing is done after validation).
/// requires: the arguments of cross_entropy_forward (validated again, the same way), lse as that
///           call wrote it; dlogits (M, V) or empty.
/// ensures: dlogits is only added to, and only in rows whose target is not ignore_index.
template <class T>
void cross_entropy_backward(T dloss, View<const Id<T>, 2> logits,
                            View<const std::int32_t, 1> targets,
                            View<const Id<T>, 1> lse,
                            View<Id<T>, 2> dlogits) {
  const Index count = detail::check_cross_entropy<T>(logits, targets, lse, &dlogits,
                                                     "cross_entropy_backward");
  if (!dlogits.present()) return;
  const Index m = logits.dim(0), v = logits.dim(1);
  const T scale = static_cast<T>(double(dloss) / double(count));
  detail::softmax_for_rows(m, v, [&](Index i) {
    const std::int32_t t = targets.data[i];
    if (t == ignore_index) return;
    T* g = dlogits.data + i * v;       // (V)
    T* p = detail::row_buffer<T>(v);   // (V) softmax, recomputed
    exp_shifted(p, logits.data + i * v, v, lse.data[i]);
    for (Index j = 0; j < v; ++j) g[j] += scale * p[j];
    g[t] -= scale;
  });
}

/// The backward of cross_entropy_forward done in place: replaces `logits` by
/// dloss * d(mean loss)/d(logits), i.e. (dloss / n) * (softmax - onehot) in rows whose target counts
/// and 0 in ignored rows. The logits are gone afterwards. Use it when the logits' gradient has no
/// other contributor (a model's head): it saves the second (M, V) tensor a separate gradient
/// needs, the largest buffer of a large-vocabulary model. Row by row it computes the same floats as
/// cross_entropy_backward into a zeroed gradient.
/// requires: the arguments of cross_entropy_forward, lse as that call wrote it.
template <class T>
void cross_entropy_backward_in_place(T dloss, View<Id<T>, 2> logits, View<const std::int32_t, 1> targets,
                                     View<const Id<T>, 1> lse) {
  const Index count = detail::check_cross_entropy<T>(logits, targets, lse, nullptr,
                                                     "cross_entropy_backward_in_place");
  const Index m = logits.dim(0), v = logits.dim(1);
  const T scale = static_cast<T>(double(dloss) / double(count));
  detail::softmax_for_rows(m, v, [&](Index i) {
    detail::cross_entropy_row_grad_in_place(logits.data + i * v, v, targets.data[i], lse.data[i], scale);
  });
}

/// Tape node of cross_entropy when the logits' gradient shares their memory (see
/// cross_entropy_backward_in_place); reads dloss like CrossEntropyNode.
template <class T>
struct CrossEntropyInPlaceNode {
  View<const T, 1> dloss;               ///< (1)
  View<T, 2> logits;                    ///< (M, V) replaced by their gradient
  View<const std::int32_t, 1> targets;  ///< (M)
  View<const T, 1> lse;                 ///< (M)
  void backward() const { cross_entropy_backward_in_place<T>(dloss.data[0], logits, targets, lse); }
};

/// Tape node of cross_entropy. The loss is the root of the backward pass, so its incoming gradient
/// is not produced by another node: the node reads it, when backward runs, from the one-element
/// gradient of the loss (loss.grad[0]), which the caller sets (to 1 for plain training) before
/// replaying the tape.
template <class T>
struct CrossEntropyNode {
  View<const T, 1> dloss;                  ///< (1) gradient of the loss, read when backward runs
  View<const T, 2> logits;                 ///< (M, V)
  View<const std::int32_t, 1> targets;     ///< (M)
  View<const T, 1> lse;                    ///< (M) row log-sum-exp from the forward pass
  View<T, 2> dlogits;                      ///< (M, V) added to; may be empty
  /// Adds dloss[0] times the gradient of the mean loss into dlogits.
  void backward() const { cross_entropy_backward<T>(dloss.data[0], logits, targets, lse, dlogits); }
};

/// Training-mode cross-entropy: runs cross_entropy_forward, writes the loss to loss.value[0] and
/// returns it; when `tape` is given, records the backward. Because the loss is the root of the
/// backward pass, the recorded node reads its incoming gradient from loss.grad[0] when the tape
/// is replayed: set loss.grad[0] = 1 (or the loss's weight) before Tape::backward(), otherwise
/// the gradient of the loss is whatever loss.grad[0] holds (0 gives no gradient).
/// When logits.grad is logits.value itself, the recorded backward is the in-place one
/// (cross_entropy_backward_in_place): the logits are replaced by their gradient.
/// requires: as cross_entropy_forward; loss.value (1); loss.grad (1) when tape is given; lse (M)
///           scratch that, with logits.value and targets, stays unchanged until backward has run.
/// ensures: loss.value[0] and every entry of lse are written.
template <class T>
T cross_entropy(Tape* tape, Var<T, 1> loss, Var<T, 2> logits, View<const std::int32_t, 1> targets,
                View<Id<T>, 1> lse) {
  hattn::detail::require(
      loss.value.present() && loss.value.dim(0) == 1 &&
          (!tape || (loss.grad.present() && loss.grad.dim(0) == 1)),
      "cross_entropy", "the loss must be one element with a one-element gradient when recorded: "
      "value ", loss.value.present() ? loss.value.shape() : "none", ", grad ",
      loss.grad.present() ? loss.grad.shape() : "none");
  const T value = cross_entropy_forward<T>(logits.value, targets, lse);
  loss.value.data[0] = value;
  if (tape && logits.grad.data == logits.value.data)
    tape->record(CrossEntropyInPlaceNode<T>{loss.grad, logits.value, targets, lse});
  else if (tape)
    tape->record(CrossEntropyNode<T>{loss.grad, logits.value, targets, lse, logits.grad});
  return value;
}

}  // namespace hattn::ops
