#pragma once
/// \file
/// FROZEN: include/hattn/model/parameters.hpp as of commit 314ec1c, moved to namespace hattn::frozen (never edit;
/// tests/model/test_frozen_model.cpp compares today's model layer with it, bitwise).
///
/// The model's parameters: one arena of values and one of gradients, carved in a fixed order, and
/// a registry that names every tensor as SPEC.md (and PyTorch's state_dict) does.

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hattn/autograd/var.hpp"
#include "hattn/core/arena.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/rng.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/ops/embedding.hpp"

namespace hattn::frozen {

/// How a parameter is initialized (PyTorch's defaults, SPEC.md "Initialization").
enum class Init {
  uniform,   ///< U(-bound, bound), bound = 1 / sqrt(fan_in): Linear weights and biases
  normal,    ///< N(0, 1): the token embedding
  ones,      ///< LayerNorm weight
  zeros,     ///< LayerNorm bias
  sinusoid,  ///< the fixed position table
};

/// One named tensor of a model: a view into the parameter arena and, when trainable, into the
/// gradient arena.
template <class T>
struct Parameter {
  std::string name;          ///< SPEC.md / PyTorch state_dict name
  std::vector<Index> shape;  ///< PyTorch shape, outermost first
  T* value = nullptr;        ///< (size()) values
  T* grad = nullptr;         ///< (size()) accumulated gradient; null for fixed tensors
  Init init = Init::zeros;   ///< initialization rule
  double bound = 0;          ///< for Init::uniform

  /// Number of elements.
  Index size() const {
    Index n = 1;
    for (Index d : shape) n *= d;
    return n;
  }
  /// False for fixed tensors (the position table), which are never trained.
  bool trainable() const { return grad != nullptr; }
  /// "(d0, d1, ...)".
  std::string shape_string() const {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + ")";
  }
};

/// Carves parameter tensors out of a value arena and a gradient arena, and registers their names.
/// Run a model's layout function once with a sizing builder (no arenas: it only counts) and once
/// with the arenas reserved to that count; both runs take the same blocks in the same order.
template <class T>
class ParameterBuilder {
 public:
  /// A sizing builder: takes nothing, counts elements.
  ParameterBuilder() = default;
  /// A builder over reserved arenas, registering into `registry`.
  ParameterBuilder(Arena<T>& values, Arena<T>& grads, std::vector<Parameter<T>>& registry)
      : values_(&values), grads_(&grads), registry_(&registry) {}

  /// A block of `dims...` elements and its gradient (empty views while sizing).
  template <class... D>
  Var<T, sizeof...(D)> take(D... dims) {
    const Index n = (Index{1} * ... * Index(dims));
    plan_.add<T>(n);
    if (!values_) return {};
    return {values_->view(dims...), grads_->view(dims...)};
  }

  /// A block without a gradient (fixed tensors).
  template <class... D>
  View<T, sizeof...(D)> take_fixed(D... dims) {
    const Index n = (Index{1} * ... * Index(dims));
    plan_.add<T>(n);
    if (!values_) return {};
    return values_->view(dims...);
  }

  /// Registers `name` for the `shape` elements at `value` (and `grad`, null if fixed).
  void name(std::string name, std::vector<Index> shape, T* value, T* grad, Init init,
            double bound = 0) {
    if (!registry_) return;
    registry_->push_back(Parameter<T>{std::move(name), std::move(shape), value, grad, init, bound});
  }

  /// Elements taken so far.
  Index total() const { return plan_.total(); }

 private:
  ArenaPlan plan_;
  Arena<T>* values_ = nullptr;
  Arena<T>* grads_ = nullptr;
  std::vector<Parameter<T>>* registry_ = nullptr;
};

/// Fills every parameter by its rule. Parameter i draws from its own Philox stream i of `seed`, so
/// its values depend only on (seed, i), not on other parameters' sizes.
template <class T>
void initialize(const std::vector<Parameter<T>>& registry, std::uint64_t seed) {
  for (std::size_t i = 0; i < registry.size(); ++i) {
    const Parameter<T>& p = registry[i];
    Generator gen(seed, /*stream=*/i);
    T* v = p.value;
    switch (p.init) {
      case Init::uniform:
        for (Index j = 0; j < p.size(); ++j) v[j] = T(gen.uniform(-p.bound, p.bound));
        break;
      case Init::normal:
        for (Index j = 0; j < p.size(); ++j) v[j] = T(gen.normal());
        break;
      case Init::ones:
        for (Index j = 0; j < p.size(); ++j) v[j] = T(1);
        break;
      case Init::zeros:
        for (Index j = 0; j < p.size(); ++j) v[j] = T(0);
        break;
      case Init::sinusoid:
        ops::sinusoid_table<T>(View<T, 2>(v, p.shape[0], p.shape[1]));
        break;
    }
  }
}

}  // namespace hattn::frozen
