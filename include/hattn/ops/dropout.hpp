#pragma once
/// \file
/// Inverted dropout over a flat buffer, with a counter-based mask: element i is kept when
/// u_i = Philox(seed).uniform(stream, c_i) >= p, and kept values are scaled by 1 / (1 - p). The
/// counter c_i is i itself, or, for a buffer of several sequences' rows (DropoutSequences), the
/// sequence's index in the step's batch and the element's place within its sequence. The mask is
/// a pure function of (seed, stream, c_i): it does not depend on threads or scheduling, nor on how
/// a batch is split into forward passes, and backward recomputes it from the same numbers instead
/// of storing it (no mask buffer, at the price of regenerating one Philox block per four elements).

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

/// Which counters a dropout's elements draw. The buffer is `count` equal slices, one per sequence,
/// of sequences first, first + 1, ... of the step's batch (in that order); element l of slice s
/// draws counter (first + s) * 2^40 + l. So a sequence's mask depends on its index in the batch and
/// not on which forward pass (micro-batch, or rank) computes it. The default, one slice of
/// sequence 0, draws counter i for element i.
struct DropoutSequences {
  Index count = 1;           ///< sequences (equal slices) in the buffer, >= 1
  std::uint64_t first = 0;   ///< the batch index of the first of them
};

namespace detail {

/// DropoutSequences: an element's place in its sequence takes the counter's low 40 bits (elements
/// per sequence below 2^40), the sequence's index the rest (indices below 2^24: the block counter
/// counts four elements per block).
inline constexpr int dropout_sequence_bits = 40;
inline constexpr std::uint64_t dropout_sequence_elements = std::uint64_t{1} << dropout_sequence_bits;
inline constexpr std::uint64_t dropout_sequences = std::uint64_t{1} << (64 - dropout_sequence_bits);

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

/// The requires-clause of dropout_forward / dropout_backward on the sequences of an n-element buffer.
inline void check_dropout_sequences(Index n, DropoutSequences seqs, const char* op) {
  hattn::detail::require(seqs.count >= 1 && n % seqs.count == 0, op, "a buffer of ", n,
                         " elements cannot be split into ", seqs.count, " equal sequences");
  hattn::detail::require(std::uint64_t(n / seqs.count) < dropout_sequence_elements, op, "sequences of ",
                         n / seqs.count, " elements: at most 2^40 - 1 are supported");
  hattn::detail::require(seqs.first < dropout_sequences && std::uint64_t(seqs.count) <= dropout_sequences - seqs.first,
                         op, "sequences ", seqs.first, " to ", seqs.first + std::uint64_t(seqs.count) - 1,
                         ": batch indices must be below 2^24");
}

/// Calls `f(i0, count, keep)` over consecutive runs [i0, i0 + count) covering [0, n), in parallel
/// over fixed blocks of each sequence's slice (DropoutSequences), where keep[l] = 1 if
/// Philox(seed).uniform(stream, c) >= p for element i0 + l's counter c, else 0. The runs are at
/// most 4 * Philox::lanes long (f's loop over them can vectorize) and never cross a slice; their
/// uniforms are formed exactly as Philox::uniform forms them.
template <class F>
void for_each_dropout_keep(Index n, double p, std::uint64_t seed, std::uint64_t stream, DropoutSequences seqs,
                           F&& f) {
  const Philox rng(seed);
  constexpr Index wide = 4 * Philox::lanes;  // elements of one Philox::blocks call
  const Index per = n / seqs.count, blocks = (per + dropout_block - 1) / dropout_block;
  parallel_for(seqs.count * blocks, [&](Index t) {
    const Index s = t / blocks, l0 = t % blocks * dropout_block, l1 = std::min(per, l0 + dropout_block);
    const std::uint64_t base = (seqs.first + std::uint64_t(s)) << dropout_sequence_bits;  // slice's element 0
    std::uint32_t words[wide] = {};  // (wide) Philox words of elements q .. q + wide
    unsigned char keep[wide];        // (wide) 1 where kept
    for (Index q = l0; q < l1; q += wide) {  // q % 4 == 0: element q is word 0 of block (base + q) / 4
      const Index count = std::min(wide, l1 - q);
      const std::uint64_t block0 = (base + std::uint64_t(q)) / 4;
      if (count == wide) {
        rng.blocks(stream, block0, words);
      } else {  // the last partial run, a block at a time
        for (Index l = 0; l < count; l += 4) {
          const auto block = rng.block(stream, block0 + std::uint64_t(l / 4));
          std::copy(block.begin(), block.end(), words + l);
        }
      }
      for (Index l = 0; l < wide; ++l) keep[l] = Philox::to_uniform(words[l]) >= p;
      f(s * per + q, count, static_cast<const unsigned char*>(keep));
    }
  });
}

}  // namespace detail

/// Inverted dropout. Training with p > 0: y_i = x_i / (1 - p) where kept (u_i >= p, u_i =
/// Philox(seed).uniform(stream, i)), y_i = 0 where dropped. Otherwise (not training, or p == 0):
/// y = x exactly. Give every dropout site and step its own (seed, stream): a reused pair reuses
/// the mask. u_i's counter is i, or as `seqs` says (DropoutSequences).
/// requires: 0 <= p < 1; x (n), y (n), n > 0; y is x itself (in place) or disjoint from it.
/// ensures: every entry of y is written; the result is bitwise the same for any thread count.
template <class T>
void dropout_forward(View<T, 1> y, View<const Id<T>, 1> x, double p, bool training,
                     std::uint64_t seed, std::uint64_t stream, DropoutSequences seqs = {}) {
  detail::check_dropout<T>(y, x, p, "dropout_forward", "y", "x");
  detail::check_dropout_sequences(x.dim(0), seqs, "dropout_forward");
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
  detail::for_each_dropout_keep(n, p, seed, stream, seqs, [&](Index i0, Index count, const unsigned char* keep) {
    T* yr = y.data + i0;               // (count)
    const T* xr = x.data + i0;         // (count); may be yr itself
    for (Index l = 0; l < count; ++l) {  // divides every lane, then selects: vectorizes
      const T scaled = xr[l] / keep_prob;
      yr[l] = keep[l] ? scaled : T(0);
    }
  });
}

/// Adds the gradient of dropout_forward: dx += dy / (1 - p) where kept, nothing where dropped
/// (training with p > 0); dx += dy otherwise. The mask is recomputed from (seed, stream, seqs), so
/// the arguments must be those of the forward call. dx may be empty (not computed).
/// requires: 0 <= p < 1; dy (n), dx (n) or empty, n > 0; dx disjoint from dy.
template <class T>
void dropout_backward(View<const T, 1> dy, View<Id<T>, 1> dx, double p, bool training,
                      std::uint64_t seed, std::uint64_t stream, DropoutSequences seqs = {}) {
  detail::check_dropout<T>(dy, dy, p, "dropout_backward", "dy", "dy");
  detail::check_dropout_sequences(dy.dim(0), seqs, "dropout_backward");
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
  detail::for_each_dropout_keep(n, p, seed, stream, seqs, [&](Index i0, Index count, const unsigned char* keep) {
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
  DropoutSequences seqs;
  void backward() const { dropout_backward<T>(dy, dx, p, training, seed, stream, seqs); }
};

/// Training-mode dropout: runs dropout_forward and, when `tape` is given, records the backward.
/// y.value may be x.value (in place: backward never reads x); y.grad and x.grad must be distinct.
template <class T>
void dropout(Tape* tape, Var<T, 1> y, Var<T, 1> x, double p, bool training, std::uint64_t seed,
             std::uint64_t stream, DropoutSequences seqs = {}) {
  dropout_forward<T>(y.value, x.value, p, training, seed, stream, seqs);
  if (tape) tape->record(DropoutNode<T>{y.grad, x.grad, p, training, seed, stream, seqs});
}

}  // namespace hattn::ops
