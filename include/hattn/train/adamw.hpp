#pragma once
/// \file
/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, exactly as PyTorch's
/// torch.optim.AdamW computes it, decaying only the tensors a predicate selects.

#include <cmath>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "hattn/model/parameters.hpp"
#include "hattn/train/adam.hpp"

namespace hattn {

/// AdamW's hyper-parameters (PyTorch's defaults).
struct AdamWOptions {
  double lr = 1e-3;            ///< learning rate
  double beta1 = 0.9;          ///< first-moment decay
  double beta2 = 0.999;        ///< second-moment decay
  double eps = 1e-8;           ///< added to the root of the second moment
  double weight_decay = 1e-2;  ///< decoupled decay rate of the selected tensors
};

/// The usual choice of tensors to decay: the weight matrices of linear layers, i.e. tensors whose
/// name ends in ".weight", that have two or more dimensions, whose name has no component containing
/// "embedding", and whose last component before ".weight" does not start with "norm". Biases,
/// LayerNorm parameters, the token embedding and the fixed position table are not decayed.
template <class T>
bool default_weight_decay(const Parameter<T>& p) {
  constexpr std::string_view suffix = ".weight";
  const std::string_view name = p.name;
  if (!name.ends_with(suffix) || p.shape.size() < 2) return false;
  if (name.find("embedding") != std::string_view::npos) return false;
  const std::string_view owner = name.substr(0, name.size() - suffix.size());
  const std::size_t dot = owner.rfind('.');
  const std::string_view last = dot == std::string_view::npos ? owner : owner.substr(dot + 1);
  return !last.starts_with("norm");
}

/// AdamW over every trainable tensor of a parameter registry. Per step, for a tensor the predicate
/// selects, first p *= 1 - lr * weight_decay, then the Adam update of hattn::Adam (the same code);
/// other tensors get the Adam update only. This is torch.optim.AdamW (foreach=False) with two
/// parameter groups, weight_decay = `weight_decay` for the selected tensors and 0 for the rest.
/// The learning rate scales the decay too, so a schedule (set_lr) schedules both.
template <class T>
class AdamW : public detail::AdamBase<T, AdamWOptions> {
 public:
  /// Selects the tensors to decay.
  using Predicate = std::function<bool(const Parameter<T>&)>;

  /// An optimizer for `params` (which must outlive it) decaying the tensors `decay` selects
  /// (evaluated once, here). Throws hattn::Error "AdamW: invalid options: ..." for lr < 0, eps < 0,
  /// betas outside [0, 1), and "AdamW: weight_decay must be finite and >= 0, got <w>".
  explicit AdamW(const std::vector<Parameter<T>>& params, AdamWOptions options = {},
                 const Predicate& decay = default_weight_decay<T>)
      : detail::AdamBase<T, AdamWOptions>("AdamW", params, options) {
    this->require(std::isfinite(options.weight_decay) && options.weight_decay >= 0, "AdamW",
                  "weight_decay must be finite and >= 0, got ", options.weight_decay);
    decayed_.reserve(params.size());
    for (const auto& p : params) decayed_.push_back(p.trainable() && decay(p));
    shrink_.assign(params.size(), 1.0);
  }

  /// Applies one update from the parameters' current gradients.
  void step() {
    const double factor = 1 - this->options_.lr * this->options_.weight_decay;
    for (std::size_t k = 0; k < decayed_.size(); ++k) shrink_[k] = decayed_[k] ? factor : 1.0;
    this->update(shrink_);
  }

  /// Whether registry entry `k` is decayed.
  bool decays(std::size_t k) const { return decayed_.at(k); }
  /// Names of the decayed tensors, in registry order.
  std::vector<std::string> decayed_names() const {
    std::vector<std::string> names;
    for (std::size_t k = 0; k < decayed_.size(); ++k)
      if (decayed_[k]) names.push_back((*this->params_)[k].name);
    return names;
  }

 private:
  std::vector<bool> decayed_;  // (registry entries)
  std::vector<double> shrink_;  // (registry entries) this step's factors
};

}  // namespace hattn
