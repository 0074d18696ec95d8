#pragma once
/// \file
/// Adam (Kingma & Ba), exactly as PyTorch's torch.optim.Adam computes it (the seed notebook's
/// optimizer), over a model's trainable parameters; and the update AdamW (train/adamw.hpp) shares.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
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

namespace detail {

/// The state and the update of Adam-family optimizers over every trainable tensor of a parameter
/// registry: moments in two flat buffers in registry order (trainable tensors only), the step
/// count, and the options (lr, beta1, beta2, eps, and whatever else `Options` adds).
template <class T, class Options>
class AdamBase {
 public:
  /// Steps taken.
  std::int64_t steps() const { return t_; }
  /// Sets the step count (resuming from a checkpoint).
  void set_steps(std::int64_t t) { t_ = t; }
  /// The options.
  const Options& options() const { return options_; }
  /// The learning rate of the next step.
  double lr() const { return options_.lr; }
  /// Sets the learning rate of the next steps (a schedule calls it before every step).
  /// Throws hattn::Error if lr < 0 or is not finite.
  void set_lr(double lr) {
    require(std::isfinite(lr) && lr >= 0, name_, "learning rate must be finite and >= 0, got ", lr);
    options_.lr = lr;
  }
  /// First moments, flat in registry order (trainable tensors only).
  std::vector<T>& first_moments() { return m_; }
  /// Second moments, flat in registry order (trainable tensors only).
  std::vector<T>& second_moments() { return v_; }
  /// Read-only first moments.
  const std::vector<T>& first_moments() const { return m_; }
  /// Read-only second moments.
  const std::vector<T>& second_moments() const { return v_; }
  /// The registry the optimizer updates.
  const std::vector<Parameter<T>>& parameters() const { return *params_; }

 protected:
  /// An optimizer called `name` (for messages) for `params`, which must outlive it.
  AdamBase(const char* name, const std::vector<Parameter<T>>& params, const Options& options)
      : name_(name), params_(&params), options_(options) {
    require(std::isfinite(options.lr) && options.lr >= 0 && options.eps >= 0 && options.beta1 >= 0 &&
                options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
            name, "invalid options: lr ", options.lr, ", beta1 ", options.beta1, ", beta2 ", options.beta2,
            ", eps ", options.eps);
    Index n = 0;
    for (std::size_t k = 0; k < params.size(); ++k) {
      if (!params[k].trainable()) continue;
      for (Index i0 = 0; i0 < params[k].size(); i0 += update_block)
        tasks_.push_back({k, n, i0, std::min(params[k].size(), i0 + update_block)});
      n += params[k].size();
    }
    m_.assign(std::size_t(n), T(0));
    v_.assign(std::size_t(n), T(0));
  }

  /// One step from the parameters' current gradients. `shrink` is empty (no decay) or holds, for
  /// every registry entry, the factor each value is multiplied by before the Adam update
  /// (1 - lr * weight_decay for decoupled weight decay; exactly 1 skips the multiply). Per element,
  /// in torch's order of operations (foreach=False):
  ///   p *= shrink;  m = b1 m + (1 - b1) g;  v = b2 v + ((1 - b2) g) g;
  ///   p += (-lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
  void update(std::span<const double> shrink) {
    ++t_;
    const double bc1 = 1 - std::pow(options_.beta1, double(t_));
    const double bc2_sqrt = std::sqrt(1 - std::pow(options_.beta2, double(t_)));
    const T b1 = T(options_.beta1), b2 = T(options_.beta2), neg_step_size = T(-options_.lr / bc1);
    const T c1 = T(1 - options_.beta1), c2 = T(1 - options_.beta2);
    const T eps = T(options_.eps), root = T(bc2_sqrt);
    // One parallel loop over every tensor's blocks: a model's many small tensors (biases,
    // LayerNorm weights) share tasks' scheduling instead of each paying for its own.
    parallel_for(Index(tasks_.size()), [&](Index t) {
      const Task& task = tasks_[std::size_t(t)];
      const Parameter<T>& p = (*params_)[task.param];
      T* m = m_.data() + task.offset;  // (p.size())
      T* v = v_.data() + task.offset;  // (p.size())
      const bool decay = !shrink.empty() && shrink[task.param] != 1.0;
      const T factor = decay ? T(shrink[task.param]) : T(1);
      for (Index i = task.begin; i < task.end; ++i) {
        const T g = p.grad[i];
        if (decay) p.value[i] *= factor;
        m[i] = m[i] * b1 + c1 * g;
        v[i] = v[i] * b2 + c2 * g * g;
        p.value[i] += neg_step_size * m[i] / (std::sqrt(v[i]) / root + eps);
      }
    });
  }

  /// Throws hattn::Error("<name>: <parts...>") unless `ok`.
  template <class... Parts>
  static void require(bool ok, const char* name, const Parts&... parts) {
    hattn::detail::require(ok, name, parts...);
  }

  const char* name_;
  const std::vector<Parameter<T>>* params_;
  Options options_;

 private:
  /// Elements of one tensor per update task.
  static constexpr Index update_block = Index{1} << 14;
  /// Elements [begin, end) of registry entry `param`, whose moments start at `offset`.
  struct Task {
    std::size_t param;
    Index offset, begin, end;
  };
  std::vector<Task> tasks_;  // every trainable tensor's blocks, in registry order
  std::vector<T> m_, v_;  // (trainable elements) moments
  std::int64_t t_ = 0;
};

}  // namespace detail

/// Adam over every trainable tensor of a parameter registry. Moments live in two flat buffers in
/// registry order. One step, per element, as torch.optim.Adam (foreach=False, weight_decay 0):
///   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
///   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <class T>
class Adam : public detail::AdamBase<T, AdamOptions> {
 public:
  /// An optimizer for `params` (which must outlive it).
  /// Throws hattn::Error "Adam: invalid options: ..." for lr < 0, eps < 0, or betas outside [0, 1).
  explicit Adam(const std::vector<Parameter<T>>& params, AdamOptions options = {})
      : detail::AdamBase<T, AdamOptions>("Adam", params, options) {}

  /// Applies one update from the parameters' current gradients.
  void step() { this->update({}); }
};

}  // namespace hattn
