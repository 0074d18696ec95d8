#pragma once
/// \file
/// A tokenized corpus split into training and validation parts, and the batches drawn from it.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/rng.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/ops/cross_entropy.hpp"

namespace hattn::data {

/// Inputs and next-token targets of `B` sequences of `T` tokens.
struct Batch {
  Tensor<std::int32_t, 2> inputs;   ///< (B, T) token ids
  Tensor<std::int32_t, 2> targets;  ///< (B, T) inputs shifted left by one, last position -100
};

/// A token array split into a training part (the first tokens) and a validation part (the last
/// `validation_fraction`, floor(n * fraction) tokens), cut into sequences of `sequence_length` T.
/// A sequence is a window of T consecutive tokens w[0..T); its targets are w[1..T) then -100
/// (SPEC.md's training objective). Training windows start anywhere in the training part, drawn
/// uniformly by a hattn::Generator the caller owns (its seed, stream and position are its whole
/// state: save them to resume exactly); validation windows are the consecutive, non-overlapping
/// windows of the validation part, so validation batches are the same every time.
class Dataset {
 public:
  /// Splits `tokens` (n of them). Throws hattn::Error, nothing kept:
  ///   "Dataset: sequence_length must be >= 2, got <T>"
  ///   "Dataset: validation_fraction must be in [0, 1), got <f>"
  ///   "Dataset: corpus of <n> tokens is shorter than one sequence + 1 (<T + 1> tokens for
  ///    sequence_length <T>)"
  ///   "Dataset: training split of <n_train> tokens is shorter than one sequence + 1 (<T + 1> tokens)"
  ///   "Dataset: validation split of <n_val> tokens (the last <f> of <n>) is shorter than one
  ///    sequence (<T> tokens)"  (only when validation_fraction > 0)
  Dataset(std::vector<std::int32_t> tokens, Index sequence_length, double validation_fraction = 0.1)
      : tokens_(std::move(tokens)), seq_(sequence_length) {
    constexpr const char* op = "Dataset";
    const Index n = Index(tokens_.size()), T = sequence_length;
    hattn::detail::require(T >= 2, op, "sequence_length must be >= 2, got ", T);
    hattn::detail::require(validation_fraction >= 0 && validation_fraction < 1, op,
                    "validation_fraction must be in [0, 1), got ", validation_fraction);
    hattn::detail::require(n >= T + 1, op, "corpus of ", n, " tokens is shorter than one sequence + 1 (", T + 1,
                    " tokens for sequence_length ", T, ")");
    const Index n_val = Index(std::floor(double(n) * validation_fraction));
    train_ = n - n_val;
    hattn::detail::require(train_ >= T + 1, op, "training split of ", train_,
                    " tokens is shorter than one sequence + 1 (", T + 1, " tokens)");
    hattn::detail::require(validation_fraction == 0 || n_val >= T, op, "validation split of ", n_val,
                    " tokens (the last ", validation_fraction, " of ", n, ") is shorter than one sequence (",
                    T, " tokens)");
  }

  /// The fewest tokens a corpus needs to be split with `sequence_length` T and
  /// `validation_fraction` f: the least n with n - floor(n f) >= T + 1 and, when f > 0,
  /// floor(n f) >= T. T + 1 when f is 0; for T = 256 and f = 0.1, 2560 (the validation split
  /// decides: floor(2559 * 0.1) = 255). Throws hattn::Error for a T or f the constructor refuses,
  /// with its messages.
  static Index minimum_tokens(Index sequence_length, double validation_fraction) {
    constexpr const char* op = "Dataset";
    const Index T = sequence_length;
    const double f = validation_fraction;
    hattn::detail::require(T >= 2, op, "sequence_length must be >= 2, got ", T);
    hattn::detail::require(f >= 0 && f < 1, op, "validation_fraction must be in [0, 1), got ", f);
    // Both splits grow with n (floor(n f) by at most one per token), so the condition is monotone.
    auto enough = [&](Index n) {
      const Index n_val = Index(std::floor(double(n) * f));
      return n - n_val >= T + 1 && (f == 0 || n_val >= T);
    };
    Index lo = T, hi = T + 1;  // enough(lo) is false, enough(hi) is being looked for
    while (!enough(hi)) lo = hi, hi *= 2;
    while (hi - lo > 1) {
      const Index mid = lo + (hi - lo) / 2;
      (enough(mid) ? hi : lo) = mid;
    }
    return hi;
  }

  /// Tokens per sequence T.
  Index sequence_length() const { return seq_; }
  /// The smallest and the largest token id in the corpus.
  std::pair<std::int32_t, std::int32_t> token_range() const {
    const auto [lo, hi] = std::minmax_element(tokens_.begin(), tokens_.end());
    return {*lo, *hi};
  }
  /// All tokens, training part first.
  std::span<const std::int32_t> tokens() const { return tokens_; }
  /// The training part.
  std::span<const std::int32_t> train_tokens() const { return std::span(tokens_).first(std::size_t(train_)); }
  /// The validation part (empty when validation_fraction was 0).
  std::span<const std::int32_t> validation_tokens() const {
    return std::span(tokens_).subspan(std::size_t(train_));
  }
  /// Distinct training windows: n_train - T + 1.
  Index train_windows() const { return train_ - seq_ + 1; }
  /// Validation windows: floor(n_val / T).
  Index validation_windows() const { return Index(validation_tokens().size()) / seq_; }

  /// Fills (B, T) `inputs` and `targets` with B training windows, drawn by `rng` in row order
  /// (one rng.below(train_windows()) each). Throws hattn::Error "Dataset::train_batch: ..." unless
  /// both are (B, T) with B >= 1.
  void train_batch(View<std::int32_t, 2> inputs, View<std::int32_t, 2> targets, Generator& rng) const {
    check(inputs, targets, "Dataset::train_batch");
    const std::span<const std::int32_t> train = train_tokens();
    for (Index b = 0; b < inputs.dim(0); ++b) {
      const Index start = Index(rng.below(std::uint64_t(train_windows())));
      fill_row(inputs, targets, b, train.subspan(std::size_t(start), std::size_t(seq_)));
    }
  }

  /// `batch` training windows drawn by `rng`, as train_batch(inputs, targets, rng).
  Batch train_batch(Index batch, Generator& rng) const {
    Batch out = make(batch, "Dataset::train_batch");
    train_batch(out.inputs, out.targets, rng);
    return out;
  }

  /// Fills (B, T) `inputs` and `targets` with validation batch `index` (>= 0): windows
  /// (index * B + b) mod validation_windows(), for b in [0, B). Throws hattn::Error
  /// "Dataset::validation_batch: there is no validation split" when there is none.
  void validation_batch(View<std::int32_t, 2> inputs, View<std::int32_t, 2> targets, Index index) const {
    constexpr const char* op = "Dataset::validation_batch";
    check(inputs, targets, op);
    hattn::detail::require(validation_windows() > 0, op, "there is no validation split");
    hattn::detail::require(index >= 0, op, "batch index must be >= 0, got ", index);
    const std::span<const std::int32_t> val = validation_tokens();
    const Index B = inputs.dim(0), windows = validation_windows();
    for (Index b = 0; b < B; ++b) {
      const Index w = Index((std::uint64_t(index) * std::uint64_t(B) + std::uint64_t(b)) % std::uint64_t(windows));
      fill_row(inputs, targets, b, val.subspan(std::size_t(w * seq_), std::size_t(seq_)));
    }
  }

  /// Validation batch `index` of `batch` sequences, as validation_batch(inputs, targets, index).
  Batch validation_batch(Index batch, Index index) const {
    Batch out = make(batch, "Dataset::validation_batch");
    validation_batch(out.inputs, out.targets, index);
    return out;
  }

 private:
  void check(View<std::int32_t, 2> inputs, View<std::int32_t, 2> targets, const char* op) const {
    hattn::detail::require(inputs.dim(0) >= 1 && inputs.dim(1) == seq_ && targets.dims == inputs.dims, op,
                    "want inputs and targets of shape (B, ", seq_, ") with B >= 1, got inputs ", inputs.shape(),
                    " and targets ", targets.shape());
  }

  Batch make(Index batch, const char* op) const {
    hattn::detail::require(batch >= 1, op, "batch must be >= 1, got ", batch);
    return Batch{Tensor<std::int32_t, 2>(batch, seq_), Tensor<std::int32_t, 2>(batch, seq_)};
  }

  // Row b: inputs = window, targets = window shifted left by one, then -100.
  void fill_row(View<std::int32_t, 2> inputs, View<std::int32_t, 2> targets, Index b,
                std::span<const std::int32_t> window) const {
    for (Index t = 0; t < seq_; ++t) {
      inputs(b, t) = window[std::size_t(t)];
      targets(b, t) = t + 1 < seq_ ? window[std::size_t(t + 1)] : ops::ignore_index;
    }
  }

  std::vector<std::int32_t> tokens_;
  Index seq_;
  Index train_ = 0;  // tokens in the training part
};

}  // namespace hattn::data
