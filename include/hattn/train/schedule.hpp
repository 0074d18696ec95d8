#pragma once
/// \file
/// Learning-rate schedule: linear warmup, then cosine decay to a floor.

#include <cmath>
#include <cstdint>
#include <numbers>

#include "hattn/core/error.hpp"

namespace hattn {

/// Linear warmup then cosine decay, as a pure function of the step. With W = warmup_steps,
/// S = total_steps, and `step` the 0-based index of the optimizer step about to be taken:
///
///     lr(step) = peak_lr * (step + 1) / W                                 if step < W
///              = min_lr + (peak_lr - min_lr) * (1 + cos(pi * (step - W) / (S - W))) / 2
///                                                                          if W <= step < S
///              = min_lr                                                    if step >= S
///
/// Edge cases: the first step already has a learning rate > 0 (peak_lr / W) and the last warmup
/// step reaches peak_lr, as does step W (the decay starts from the peak). W = 0 starts decaying
/// from peak_lr at step 0. W = S is warmup only, then min_lr. Past the total the rate stays at
/// min_lr. min_lr = peak_lr gives warmup then a constant rate.
struct WarmupCosine {
  double peak_lr = 3e-4;          ///< rate at the end of the warmup
  double min_lr = 0;              ///< rate at and after total_steps
  std::int64_t warmup_steps = 0;  ///< W
  std::int64_t total_steps = 1;   ///< S: the decay ends here

  /// Throws hattn::Error "WarmupCosine: ..." unless 0 <= min_lr <= peak_lr (finite) and
  /// 0 <= warmup_steps <= total_steps.
  void validate() const {
    detail::require(std::isfinite(peak_lr) && std::isfinite(min_lr) && min_lr >= 0 && min_lr <= peak_lr,
                    "WarmupCosine", "need 0 <= min_lr <= peak_lr, got min_lr ", min_lr, ", peak_lr ", peak_lr);
    detail::require(warmup_steps >= 0 && warmup_steps <= total_steps, "WarmupCosine",
                    "need 0 <= warmup_steps <= total_steps, got warmup_steps ", warmup_steps,
                    ", total_steps ", total_steps);
  }

  /// The learning rate of step `step` (>= 0), by the formula above. Throws hattn::Error for a
  /// negative step or invalid options.
  double lr(std::int64_t step) const {
    validate();
    detail::require(step >= 0, "WarmupCosine", "step must be >= 0, got ", step);
    if (step < warmup_steps) return peak_lr * double(step + 1) / double(warmup_steps);
    if (step >= total_steps) return min_lr;
    const double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  }

  /// lr(step).
  double operator()(std::int64_t step) const { return lr(step); }
};

}  // namespace hattn
