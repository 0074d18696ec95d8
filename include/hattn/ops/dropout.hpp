#pragma once
/// \file
/// Inverted dropout over a flat buffer, with a counter-based mask: element i is kept when
/// u_i = Philox(seed).uniform(stream, i) >= p, and kept values are scaled by 1 / (1 - p). The
/// mask is a pure function of (seed, stream, i): it does not depend on threads or scheduling, and
/// backward recomputes it from the same three numbers instead of storing it (no mask buffer, at
/// the price of regenerating one Philox block per four elements).

#include <algorithm>
#include <cstdint>
#include <functional>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/rng.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::ops {

namespace detail {

/// Elements per parallel task of dropout: a constant multiple of 4 (a Philox block gives the
/// uniforms of four consecutive elements), so the partition never depends on the threads.
inline constexpr Index dropout_block = Index{1} << 14;
static_assert(dropout_block % (4 * Philox::lanes) == 0);

/// The requires-clause of dropout_forward / dropout_backward on p and the sizes of `a`, `b`.
template <class T>
void check_dropout(View<const T, 1> a, View<const T, 1> b, double p, const char* op,
                   const char* a_name, const char* b_name) {
  hattn::detail::require(p >= 0.0 && p < 1.0, op, "p must be in [0, 1), got ", p);
  hattn::detail::require(b.dim(0) > 0, op, "zero-sized dimension: ", b_name, " ", b.shape());
  hattn::detail::require(a.dim(0) == b.dim(0), op, "shape mismatch: ", a_name, " ", a.shape(), ", ",
                         b_name, " ", b.shape(), " (want equal sizes)");
}

/// Calls `f(i0, count, keep)` over consecutive runs [i0, i0 + count) covering [0, n), in parallel
/// over fixed blocks, where keep[l] = 1 if Philox(seed).uniform(stream, i0 + l) >= p, else 0. The
/// runs are at most 4 * Philox::lanes long (f's loop over them can vectorize); their uniforms
/// are formed exactly as Philox::uniform forms them.
template <class F>
void for_each_dropout_keep(Index n, double p, std::uint64_t seed, std::uint64_t stream, F&& f) {
  const Philox rng(seed);
  constexpr Index wide = 4 * Philox::lanes;  // elements of one Philox::blocks call
  parallel_for((n + dropout_block - 1) / dropout_block, [&](Index t) {
    const Index i0 = t * dropout_block, i1 = std::min(n, i0 + dropout_block);
    std::uint32_t words[wide] = {};  // (wide) Philox words of elements q .. q + wide
    unsigned char keep[wide];        // (wide) 1 where kept
    for (Index q = i0; q < i1; q += wide) {  // q % 4 == 0: element q is word 0 of block q / 4
      const Index count = std::min(wide, i1 - q);
      if (count == wide) {
        rng.blocks(stream, static_cast<std::uint64_t>(q / 4), words);
      } else {  // the last partial run, a block at a time
        for (Index l = 0; l < count; l += 4) {
          const auto block = rng.block(stream, static_cast<std::uint64_t>((q + l) / 4));
          std::copy(block.begin(), block.end(), words + l);
        }
      }
      for (Index l = 0; l < wide; ++l) keep[l] = Philox::to_uniform(words[l]) >= p;
      f(q, count, static_cast<const unsigned char*>(keep));
    }
  });
}

}  // namespace detail

/// Inverted dropout. Training with p > 0: y_i = x_i / (1 - p) where kept (u_i >= p, u_i =
/// Philox(seed).uniform(stream, i)), y_i = 0 where dropped. Otherwise (not training, or p == 0):
/// y = x exactly. Give every dropout site and step its own (seed, stream): a reused pair reuses
/// the mask.
/// requires: 0 <= p < 1; x (n), y (n), n > 0; y is x itself (in place) or disjoint from it.
/// ensures: every entry of y is written; the result is bitwise the same for any thread count.
template <class T>
void dropout_forward(View<T, 1> y, View<const Id<T>, 1> x, double p, bool training,
                     std::uint64_t seed, std::uint64_t stream) {
  detail::check_dropout<T>(y, x, p, "dropout_forward", "y", "x");
  // In place is safe (entry i reads only x[i]); a partial overlap would race between tasks.
  hattn::detail::require(y.data == x.data || disjoint<T>(y.data, x.dim(0), x.data, x.dim(0)),
                         "dropout_forward", "y overlaps x without being the same buffer");
  const Index n = x.dim(0);
  if (!training || p == 0.0) {
    if (y.data != x.data) {
      parallel_for((n + detail::dropout_block - 1) / detail::dropout_block, [&](Index t) {
        const Index i0 = t * detail::dropout_block, i1 = std::min(n, i0 + detail::dropout_block);
        std::copy(x.data + i0, x.data + i1, y.data + i0);
      });
    }
    return;
  }
  // A division, not a product with 1 / (1 - p): kept values are exactly x / (1 - p) in T.
  const T keep_prob = static_cast<T>(1.0 - p);
  detail::for_each_dropout_keep(n, p, seed, stream, [&](Index i0, Index count, const unsigned char* keep) {
    T* yr = y.data + i0;               // (count)
    const T* xr = x.data + i0;         // (count); may be yr itself
    for (Index l = 0; l < count; ++l) {  // divides every lane, then selects: vectorizes
      const T scaled = xr[l] / keep_prob;
      yr[l] = keep[l] ? scaled : T(0);
    }
  });
}

/// Adds the gradient of dropout_forward: dx += dy / (1 - p) where kept, nothing where dropped
/// (training with p > 0); dx += dy otherwise. The mask is recomputed from (seed, stream), so the
/// arguments must be those of the forward call. dx may be empty (not computed).
/// requires: 0 <= p < 1; dy (n), dx (n) or empty, n > 0; dx disjoint from dy.
template <class T>
void dropout_backward(View<const T, 1> dy, View<Id<T>, 1> dx, double p, bool training,
                      std::uint64_t seed, std::uint64_t stream) {
  detail::check_dropout<T>(dy, dy, p, "dropout_backward", "dy", "dy");
  if (!dx.present()) return;
  detail::check_dropout<T>(dx, dy, p, "dropout_backward", "dx", "dy");
  // dx aliasing dy would add dy to itself before (or while) it is read.
  hattn::detail::require(disjoint<T>(dx.data, dy.dim(0), dy.data, dy.dim(0)), "dropout_backward",
                         "dx overlaps dy");
  const Index n = dy.dim(0);
  if (!training || p == 0.0) {
    parallel_for((n + detail::dropout_block - 1) / detail::dropout_block, [&](Index t) {
      const Index i0 = t * detail::dropout_block, i1 = std::min(n, i0 + detail::dropout_block);
      for (Index i = i0; i < i1; ++i) dx.data[i] += dy.data[i];
    });
    return;
  }
  const T keep_prob = static_cast<T>(1.0 - p);
  detail::for_each_dropout_keep(n, p, seed, stream, [&](Index i0, Index count, const unsigned char* keep) {
    T* g = dx.data + i0;               // (count)
    const T* d = dy.data + i0;         // (count)
    for (Index l = 0; l < count; ++l) {  // dropped lanes keep their gradient bit for bit
      const T sum = g[l] + d[l] / keep_prob;
      g[l] = keep[l] ? sum : g[l];
    }
  });
}

/// Tape node of dropout: the gradient views and the numbers that regenerate the mask.
template <class T>
struct DropoutNode {
  View<const T, 1> dy;  // (n)
  View<T, 1> dx;        // (n) or empty
  double p = 0.0;
  bool training = false;
  std::uint64_t seed = 0, stream = 0;
  void backward() const { dropout_backward<T>(dy, dx, p, training, seed, stream); }
};

/// Training-mode dropout: runs dropout_forward and, when `tape` is given, records the backward.
/// y.value may be x.value (in place: backward never reads x); y.grad and x.grad must be distinct.
template <class T>
void dropout(Tape* tape, Var<T, 1> y, Var<T, 1> x, double p, bool training, std::uint64_t seed,
             std::uint64_t stream) {
  dropout_forward<T>(y.value, x.value, p, training, seed, stream);
  if (tape) tape->record(DropoutNode<T>{y.grad, x.grad, p, training, seed, stream});
}

}  // namespace hattn::ops
