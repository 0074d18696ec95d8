#pragma once
/// \file
/// Adam (Kingma & Ba), exactly as PyTorch's torch.optim.Adam computes it (the seed notebook's
/// optimizer), over a model's trainable parameters.

#include <cmath>
#include <cstdint>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/model/parameters.hpp"

namespace hattn {

/// Adam's hyper-parameters (PyTorch's defaults).
struct AdamOptions {
  double lr = 1e-3;      ///< learning rate
  double beta1 = 0.9;    ///< first-moment decay
  double beta2 = 0.999;  ///< second-moment decay
  double eps = 1e-8;     ///< added to the root of the second moment
};

/// Adam over every trainable tensor of a parameter registry. Moments live in two flat buffers in
/// registry order. One step, per element, as torch.optim.Adam (foreach=False):
///   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
///   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <class T>
class Adam {
 public:
  /// An optimizer for `params` (which must outlive it).
  Adam(const std::vector<Parameter<T>>& params, AdamOptions options = {})
      : params_(&params), options_(options) {
    detail::require(options.lr >= 0 && options.eps >= 0 && options.beta1 >= 0 && options.beta1 < 1 &&
                        options.beta2 >= 0 && options.beta2 < 1,
                    "Adam", "invalid options: lr ", options.lr, ", beta1 ", options.beta1, ", beta2 ",
                    options.beta2, ", eps ", options.eps);
    Index n = 0;
    for (const auto& p : params) n += p.trainable() ? p.size() : 0;
    m_.assign(std::size_t(n), T(0));
    v_.assign(std::size_t(n), T(0));
  }

  /// Applies one update from the parameters' current gradients.
  void step() {
    ++t_;
    const double bc1 = 1 - std::pow(options_.beta1, double(t_));
    const double bc2_sqrt = std::sqrt(1 - std::pow(options_.beta2, double(t_)));
    const T b1 = T(options_.beta1), b2 = T(options_.beta2), step_size = T(options_.lr / bc1);
    const T eps = T(options_.eps), root = T(bc2_sqrt);
    Index offset = 0;
    for (const auto& p : *params_) {
      if (!p.trainable()) continue;
      T* m = m_.data() + offset;  // (p.size())
      T* v = v_.data() + offset;  // (p.size())
      const Index n = p.size();
      constexpr Index block = 1 << 14;
      parallel_for((n + block - 1) / block, [&](Index task) {
        const Index i1 = std::min(n, (task + 1) * block);
        for (Index i = task * block; i < i1; ++i) {
          const T g = p.grad[i];
          m[i] = m[i] * b1 + g * (T(1) - b1);
          v[i] = v[i] * b2 + g * g * (T(1) - b2);
          p.value[i] -= step_size * (m[i] / (std::sqrt(v[i]) / root + eps));
        }
      });
      offset += n;
    }
  }

  /// Steps taken.
  std::int64_t steps() const { return t_; }
  /// The options.
  const AdamOptions& options() const { return options_; }
  /// First moments, flat in registry order (trainable tensors only).
  std::vector<T>& first_moments() { return m_; }
  /// Second moments, flat in registry order (trainable tensors only).
  std::vector<T>& second_moments() { return v_; }
  /// Sets the step count (resuming from a checkpoint).
  void set_steps(std::int64_t t) { t_ = t; }

 private:
  const std::vector<Parameter<T>>* params_;
  AdamOptions options_;
  std::vector<T> m_, v_;  // (trainable elements) moments
  std::int64_t t_ = 0;
};

}  // namespace hattn
