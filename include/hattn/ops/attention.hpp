#pragma once
/// \file
/// Multi-head scaled dot-product attention over strided row blocks, flash-attention style: the
/// forward pass keeps only the log-sum-exp of each score row, and the backward pass recomputes the
/// probabilities from it, so no (Tq, Tk) probability matrix outlives a query tile.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/blas.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/core/vector_math.hpp"

namespace hattn::ops {

/// Which keys a query row sees (SPEC.md). Every mask but the notebook's shows query row i a
/// prefix of the keys, [0, visible_keys(mask, i, Tk)), and gives the others no weight (exactly
/// what a -inf score gives):
///   `none`        every key row (the tree's `full` node mask);
///   `causal`      key rows j <= i (top-left aligned, also when Tq != Tk; rows i >= Tk see every
///                 key): leaf chunks, the dense baseline and the tree's `aligned` node mask;
///   `summaries(k, S)`  k mean-pooled summaries of S rows, summary b starting at row
///                 s_b = floor(b S / k): row i sees summary b when s_b <= i, that is the first
///                 ceil((i + 1) k / S) of them (the `aligned` mask of a pooled tree level);
///   `notebook`    the seed notebook's defect (SPEC.md, seed_compat): every key takes part, and
///                 -1e9 is added to the scores of keys j <= i. Not causal. The lse of a row whose
///                 every key is masked (i + 1 >= Tk) is stored relative to -1e9
///                 (detail::notebook_score).
struct Mask {
  /// The three kinds of mask above.
  enum class Kind : unsigned char { none, prefix, notebook };
  Kind kind = Kind::none;  ///< which mask
  Index keys = 1;          ///< prefix: row i sees ceil((i + 1) keys / rows) keys
  Index rows = 1;          ///< prefix: see keys

  /// Every key.
  static const Mask none;
  /// Keys j <= i.
  static const Mask causal;
  /// The seed notebook's -1e9 * tril(ones) added to the scores.
  static const Mask notebook;
  /// `k` summaries of a left sibling of `rows` rows, summary b seen from row floor(b rows / k) on.
  static constexpr Mask summaries(Index k, Index rows) { return Mask{Kind::prefix, k, rows}; }

  /// Same kind and slope.
  friend constexpr bool operator==(const Mask&, const Mask&) = default;
};
inline constexpr Mask Mask::none{Mask::Kind::none, 1, 1};
inline constexpr Mask Mask::causal{Mask::Kind::prefix, 1, 1};
inline constexpr Mask Mask::notebook{Mask::Kind::notebook, 1, 1};

/// The score the seed notebook adds to masked entries (exactly representable in float).
inline constexpr double notebook_masked_score = -1e9;

namespace detail {

/// Query rows per tile. A constant, so the parallel partition never depends on the thread count;
/// 64 keeps a tile's (64, Tk) score block in cache for the sequence lengths the model uses.
inline constexpr Index attention_tile = 64;

/// Keys visible to query row `i`: [0, visible_keys(...)). Always >= 1 when Tk >= 1 (a prefix
/// mask shows row 0 ceil(keys / rows) >= 1 keys). Non-decreasing in i.
inline Index visible_keys(Mask mask, Index i, Index tk) {
  if (mask.kind != Mask::Kind::prefix) return tk;
  return std::min(((i + 1) * mask.keys + mask.rows - 1) / mask.rows, tk);
}

/// Score (i, j) under the notebook's mask, from the scaled score `s`, with Tk keys: s + (-1e9) for
/// j <= i, s otherwise. A row that every key's mask covers (i + 1 >= Tk) is stored relative to
/// -1e9, as (s + (-1e9)) - (-1e9): the same probabilities (softmax is shift invariant and both
/// differences are exact), but an lse near 0 instead of near -1e9, where float would round the
/// row's log-sum away (and the backward pass recomputes probabilities from the lse).
template <class T>
T notebook_score(T s, Index i, Index j, Index tk) {
  const T masked = T(notebook_masked_score);
  if (j > i) return s;
  return i + 1 >= tk ? (s + masked) - masked : s + masked;
}

/// The notebook's mask on a tile's (m, kv) scores of query rows from i0, against all kv = Tk keys.
template <class T>
void apply_notebook_mask(T* s, Index m, Index kv, Index i0) {
  for (Index r = 0; r < m; ++r)
    for (Index j = 0; j < std::min(i0 + r + 1, kv); ++j) s[r * kv + j] = notebook_score(s[r * kv + j], i0 + r, j, kv);
}

/// Thread-local scratch that only grows, organised as a stack so that re-entrant use is safe: a
/// thread blocked inside a nested parallel_for (hattn::gemm splits big products) may run another
/// attention task, which then takes the next level instead of the buffer still in use below it.
/// In steady state (same shapes every step) no call allocates.
template <class T>
class Scratch {
 public:
  /// `n` elements, valid until this object is destroyed. Their contents are unspecified.
  explicit Scratch(Index n) : pool_(pool()) {
    if (pool_.depth == pool_.levels.size()) pool_.levels.emplace_back();
    std::vector<T>& level = pool_.levels[pool_.depth++];
    if (level.size() < static_cast<std::size_t>(n)) level.resize(static_cast<std::size_t>(n));
    data_ = level.data();
  }
  ~Scratch() { --pool_.depth; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  /// Start of the buffer.
  T* data() const { return data_; }

 private:
  struct Pool {
    std::vector<std::vector<T>> levels;  // one buffer per nesting depth; moving a level keeps its data
    std::size_t depth = 0;               // levels in use on this thread
  };
  static Pool& pool() {
    thread_local Pool p;
    return p;
  }
  Pool& pool_;
  T* data_ = nullptr;
};

/// A named Rows argument, for the stride check's message.
template <class T>
struct NamedRows {
  const char* name;
  Rows<const T> rows;
};

/// Shape checks shared by attention_forward and attention_backward.
template <class T>
void check_attention(const char* op, Rows<const T> o, Rows<const T> q, Rows<const T> k,
                     Rows<const T> v, View<const T, 3> lse, bool lse_required, Index heads) {
  using hattn::detail::require;
  require(heads >= 1, op, "heads must be >= 1, got ", heads);
  require(q.groups > 0 && q.rows > 0 && q.cols > 0 && k.groups > 0 && k.rows > 0 && k.cols > 0 &&
              v.groups > 0 && v.rows > 0 && v.cols > 0,
          op, "zero-sized dimension: q ", q.shape(), ", k ", k.shape(), ", v ", v.shape());
  require(k.groups == q.groups && v.groups == q.groups && o.groups == q.groups &&
              v.rows == k.rows && o.rows == q.rows && k.cols == q.cols && v.cols == q.cols &&
              o.cols == q.cols,
          op, "shape mismatch: q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(), ", o ", o.shape(),
          " (want q and o (G, Tq, C), k and v (G, Tk, C))");
  require(q.cols % heads == 0, op, q.cols, " columns do not split into ", heads, " heads: q ",
          q.shape());
  for (const NamedRows<T>& r : {NamedRows<T>{"q", q}, NamedRows<T>{"k", k}, NamedRows<T>{"v", v},
                                NamedRows<T>{"o", o}}) {
    require(r.rows.row_stride >= r.rows.cols, op, "row stride ", r.rows.row_stride,
            " is smaller than a row: ", r.name, " ", r.rows.shape());
  }
  const bool lse_ok = lse.present() ? lse.dim(0) == q.groups && lse.dim(1) == heads && lse.dim(2) == q.rows
                                    : !lse_required;
  require(lse_ok, op, "lse ", lse.present() ? lse.shape() : std::string("none"),
          " is not (G, heads, Tq) = ", hattn::detail::shape_string({q.groups, heads, q.rows}));
}

}  // namespace detail

/// Multi-head scaled dot-product attention. For every group g and head j (columns
/// [j*dh, (j+1)*dh), dh = C / heads): S = Q K^T / sqrt(dh), masked entries -inf, P = softmax(S)
/// over the keys, O = P V, written into `o` with the heads side by side. When `lse` is given, it
/// receives log(sum_j exp(S_ij)) of every score row, which is all attention_backward needs; the
/// probabilities themselves are never stored.
///
/// Masked scores take no part: each row's softmax runs over its visible keys only (exactly what a
/// -inf score gives, exp(-inf) = 0), and with the causal mask a query tile [i0, i1) computes scores
/// against keys [0, min(i1, Tk)) only. Within a tile's diagonal block masked scores are computed
/// by the tile's GEMM and discarded; their probabilities are exact zeros, so finite future keys
/// and values never change a past output's value (they only enter as products with exact zeros).
/// Cost per (group, head): 4 Tq Tk dh flops with Mask::none, about half with Mask::causal. No row is ever left with nothing visible: Tk >= 1
/// (zero sizes are rejected), Mask::none shows every key, and causal row i always sees key 0. So
/// every softmax denominator is >= 1 after subtracting the row maximum and every lse is finite.
///
/// Work: parallel_for over (group, head, 64-row query tile), a fixed partition; each item writes
/// only its tile's rows of `o`, its head's columns, and its lse entries, so results are bitwise
/// the same for any thread count. Scratch: a thread-local buffer of (64, Tk) scores per item that
/// grows once and is then reused (no allocation per call in steady state).
///
/// requires: q and o (G, Tq, C), k and v (G, Tk, C), all sizes > 0, heads >= 1, C % heads == 0,
///   row_stride >= cols for each; lse (G, heads, Tq) contiguous, or empty (nothing stored, e.g.
///   for inference); `o` overlaps none of q, k, v, lse; k and v finite.
/// ensures: every entry of o's (G, Tq, C) rows is written, nothing else in its buffer; when lse
///   is present, every entry of lse is written.
template <class T>
void attention_forward(Rows<T> o, Rows<const Id<T>> q, Rows<const Id<T>> k, Rows<const Id<T>> v,
                       View<T, 3> lse, Index heads, Mask mask) {
  detail::check_attention<T>("attention_forward", o, q, k, v, lse, false, heads);
  const Index tq = q.rows, tk = k.rows, dh = q.cols / heads;
  const Index tile = detail::attention_tile, tiles = (tq + tile - 1) / tile;
  const T scale = T(1) / std::sqrt(T(dh));
  parallel_for(q.groups * heads * tiles, [&](Index item) {
    const Index g = item / (heads * tiles), h = item / tiles % heads, t = item % tiles;
    const Index i0 = t * tile, m = std::min(tile, tq - i0);
    const Index kv = detail::visible_keys(mask, i0 + m - 1, tk);  // keys any row of the tile sees
    const Index c0 = h * dh;
    detail::Scratch<T> scratch(m * kv);
    T* s = scratch.data();  // (m, kv) scores, then probabilities
    gemm<T>(Trans::no, Trans::yes, m, kv, dh, scale, q.row(g, i0) + c0, q.row_stride,
            k.row(g, 0) + c0, k.row_stride, T(0), s, kv);
    if (mask.kind == Mask::Kind::notebook) detail::apply_notebook_mask(s, m, kv, i0);
    for (Index r = 0; r < m; ++r) {
      T* row = s + r * kv;  // (kv)
      const Index n = detail::visible_keys(mask, i0 + r, tk);
      T top = row[0];
      for (Index j = 1; j < n; ++j) top = std::max(top, row[j]);
      exp_shifted(row, row, n, top);  // one vector exp for every entry (core/vector_math.hpp)
      T sum = 0;
      for (Index j = 0; j < n; ++j) sum += row[j];
      const T inv = T(1) / sum;
      for (Index j = 0; j < n; ++j) row[j] *= inv;
      std::fill(row + n, row + kv, T(0));
      if (lse.present()) lse.data[(g * heads + h) * tq + i0 + r] = top + std::log(sum);
    }
    gemm<T>(Trans::no, Trans::no, m, dh, kv, T(1), s, kv, v.row(g, 0) + c0, v.row_stride, T(0),
            o.row(g, i0) + c0, o.row_stride);
  });
}

/// Adds the gradients of attention_forward, recomputing P = exp(S - lse) tile by tile:
/// D_i = sum(dO_i * O_i), dP = dO V^T, dS = P * (dP - D), dQ += dS K / sqrt(dh),
/// dK += dS^T Q / sqrt(dh), dV += P^T dO. Any of dq, dk, dv may be empty (data null: skipped).
///
/// Work: parallel_for over (group, head) pairs, a fixed partition; each item walks its query
/// tiles in order and adds into its own group's rows and its head's columns of dq, dk and dv, so
/// results are bitwise the same for any thread count. Scratch: a thread-local buffer of
/// 2 * (64, Tk) + 64 elements per item that grows once and is then reused.
///
/// requires: the shapes of attention_forward with `o` and `lse` (present) as it produced them;
///   dout present; dout and dq shaped like q, dk and dv like k (when present), row_stride >= cols for each;
///   distinct groups' rows of dq (and of dk, of dv) do not overlap, e.g. a Rows with
///   group_stride 0 cannot take a gradient; the gradients overlap none of the inputs (dq, dk, dv
///   may be column slices of one fused buffer, as they never share an element).
/// ensures: dq, dk, dv hold their previous contents plus the gradient; nothing else is written.
template <class T>
void attention_backward(Rows<const T> dout, Rows<const Id<T>> q, Rows<const Id<T>> k,
                        Rows<const Id<T>> v, Rows<const Id<T>> o, View<const Id<T>, 3> lse,
                        Index heads, Mask mask, Rows<Id<T>> dq, Rows<Id<T>> dk, Rows<Id<T>> dv) {
  const char* op = "attention_backward";
  detail::check_attention<T>(op, o, q, k, v, lse, true, heads);
  const auto same = [](const auto& a, Rows<const T> x) {
    return a.groups == x.groups && a.rows == x.rows && a.cols == x.cols;
  };
  const auto like = [&](Rows<T> g, Rows<const T> x) { return g.data == nullptr || same(g, x); };
  const auto shape_or_none = [](const auto& g) { return g.data ? g.shape() : std::string("none"); };
  hattn::detail::require(
      dout.data != nullptr && same(dout, q) && like(dq, q) && like(dk, k) && like(dv, v), op,
      "gradient shape mismatch: dout ", shape_or_none(dout), ", dq ", shape_or_none(dq), " for q ",
      q.shape(), ", dk ", shape_or_none(dk), ", dv ", shape_or_none(dv), " for k and v ", k.shape());
  for (const detail::NamedRows<T>& r :
       {detail::NamedRows<T>{"dout", dout}, detail::NamedRows<T>{"dq", dq},
        detail::NamedRows<T>{"dk", dk}, detail::NamedRows<T>{"dv", dv}}) {
    hattn::detail::require(r.rows.data == nullptr || r.rows.row_stride >= r.rows.cols, op,
                           "row stride ", r.rows.row_stride, " is smaller than a row: ", r.name, " ",
                           r.rows.shape());
  }
  if (!dq.data && !dk.data && !dv.data) return;

  const Index tq = q.rows, tk = k.rows, dh = q.cols / heads;
  const Index tile = detail::attention_tile, tiles = (tq + tile - 1) / tile;
  const T scale = T(1) / std::sqrt(T(dh));
  const bool need_ds = dq.data || dk.data;
  parallel_for(q.groups * heads, [&](Index item) {
    const Index g = item / heads, h = item % heads, c0 = h * dh;
    const T* lse_gh = lse.data + (g * heads + h) * tq;  // (Tq)
    detail::Scratch<T> scratch(2 * tile * tk + tile);
    T* p = scratch.data();          // (m, kv) scores, then probabilities
    T* ds = p + tile * tk;          // (m, kv) dP, then dS
    T* delta = ds + tile * tk;      // (m) D_i = dO_i . O_i
    for (Index t = 0; t < tiles; ++t) {
      const Index i0 = t * tile, m = std::min(tile, tq - i0);
      const Index kv = detail::visible_keys(mask, i0 + m - 1, tk);
      gemm<T>(Trans::no, Trans::yes, m, kv, dh, scale, q.row(g, i0) + c0, q.row_stride,
              k.row(g, 0) + c0, k.row_stride, T(0), p, kv);
      if (mask.kind == Mask::Kind::notebook) detail::apply_notebook_mask(p, m, kv, i0);
      for (Index r = 0; r < m; ++r) {
        T* row = p + r * kv;  // (kv)
        const Index n = detail::visible_keys(mask, i0 + r, tk);
        const T l = lse_gh[i0 + r];
        exp_shifted(row, row, n, l);  // P = exp(S - lse), with the forward pass's exp
        std::fill(row + n, row + kv, T(0));
      }
      if (dv.data) {
        gemm<T>(Trans::yes, Trans::no, kv, dh, m, T(1), p, kv, dout.row(g, i0) + c0, dout.row_stride,
                T(1), dv.row(g, 0) + c0, dv.row_stride);
      }
      if (!need_ds) continue;
      for (Index r = 0; r < m; ++r) {
        const T* dor = dout.row(g, i0 + r) + c0;  // (dh)
        const T* orow = o.row(g, i0 + r) + c0;    // (dh)
        T d = 0;
        for (Index c = 0; c < dh; ++c) d += dor[c] * orow[c];
        delta[r] = d;
      }
      gemm<T>(Trans::no, Trans::yes, m, kv, dh, T(1), dout.row(g, i0) + c0, dout.row_stride,
              v.row(g, 0) + c0, v.row_stride, T(0), ds, kv);
      for (Index r = 0; r < m; ++r) {
        const T* prow = p + r * kv;  // (kv)
        T* dsrow = ds + r * kv;      // (kv)
        const Index n = detail::visible_keys(mask, i0 + r, tk);
        for (Index j = 0; j < n; ++j) dsrow[j] = prow[j] * (dsrow[j] - delta[r]);
        std::fill(dsrow + n, dsrow + kv, T(0));
      }
      if (dq.data) {
        gemm<T>(Trans::no, Trans::no, m, dh, kv, scale, ds, kv, k.row(g, 0) + c0, k.row_stride,
                T(1), dq.row(g, i0) + c0, dq.row_stride);
      }
      if (dk.data) {
        gemm<T>(Trans::yes, Trans::no, kv, dh, m, scale, ds, kv, q.row(g, i0) + c0, q.row_stride,
                T(1), dk.row(g, 0) + c0, dk.row_stride);
      }
    }
  });
}

/// Tape node of attention: what attention_backward needs.
template <class T>
struct AttentionNode {
  Rows<const T> dout, q, k, v, o;
  View<const T, 3> lse;
  Index heads = 1;
  Mask mask = Mask::none;
  Rows<T> dq, dk, dv;
  void backward() const { attention_backward<T>(dout, q, k, v, o, lse, heads, mask, dq, dk, dv); }
};

/// Training-mode attention: runs attention_forward and, when `tape` is given, records the
/// backward, which adds o.grad's contribution into q.grad, k.grad and v.grad (each may be empty).
/// Nothing is recorded when o.grad is empty: no gradient flows through this op then.
/// requires: those of attention_forward; `lse` present when `tape` is given (backward reads it),
///   and it, o.value, q, k, v stay unchanged until the tape's backward has run.
template <class T>
void attention(Tape* tape, RowsVar<T> o, RowsVar<T> q, RowsVar<T> k, RowsVar<T> v, View<T, 3> lse,
               Index heads, Mask mask) {
  hattn::detail::require(tape == nullptr || lse.present(), "attention",
                         "lse must be stored when recording on a tape");
  attention_forward<T>(o.value, q.value, k.value,
                       v.value, lse, heads, mask);
  if (tape && o.grad.data) {
    tape->record(AttentionNode<T>{o.grad, q.value,
                                  k.value, v.value,
                                  o.value, lse, heads, mask, q.grad, k.grad,
                                  v.grad});
  }
}

}  // namespace hattn::ops
