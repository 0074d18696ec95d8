#pragma once
// Parity of one fixture with the PyTorch reference (tools/hattn_reference.py, fixtures from
// tools/make_fixtures.py): check_fixture<C, T>(name) compares the logits, probabilities, loss, every
// gradient and the weights after 3 Adam steps, for a float model within float error bounds derived
// from the fixture's shape (any correct GEMM kernel, any summation order) and for a double model
// at near-double tolerances. Used by test_parity.cpp (the seed model) and test_parity_variants.cpp.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "hattn/hattn.hpp"
#include "support/float_error.hpp"

#ifndef HATTN_FIXTURE_DIR
#error "HATTN_FIXTURE_DIR must name tests/fixtures"
#endif

namespace hattn::test::parity {

namespace fe = hattn::test::fe;

// Largest elementwise error relative to a per-entry bound: <= 1 passes.
template <class T, class Bound>
double worst_over_bound(const T* got, const std::vector<float>& ref, Bound bound, Index* where = nullptr) {
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(double(got[i]) - double(ref[i])) / (bound(i) + 1e-300);
    if (e > worst) {
      worst = e;
      if (where) *where = Index(i);
    }
  }
  return worst;
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::abs(x)));
  return m;
}

// Float error bounds, the same for every correct kernel (docs/model.md, "How it is verified"):
// tests/support/float_error.hpp derives them. The magnitudes are not visible at the end of the
// network: M is taken as the largest reference entry of the result's group (the tensor for
// outputs; the module for gradients, fe::module_of). That is what the bound assumes, and a wrong
// op misses it by orders of magnitude: gamma_n stays below 1e-3 for every fixture.
inline fe::DecoderBounds float_bounds(const nlohmann::json& config) {
  const fe::VariantPath variant{.dense = config.value("mixer", "hierarchical") == "dense",
                                .pooled = config.value("summaries", 0) > 0,
                                .residual = config.value("node_combine", "replace") == "residual"};
  return fe::decoder_bounds(config["levels"], config["heads"], config["d_model"], config["blocks"],
                            config["vocab_size"], config["batch"], config["tokens"], variant);
}

template <hattn::Config C, class T>
void check_fixture(const std::string& name) {
  const auto file = hattn::io::read_safetensors(std::string(HATTN_FIXTURE_DIR) + "/" + name + ".safetensors");
  const auto config = nlohmann::json::parse(file.metadata().at("config"));
  REQUIRE(config["levels"] == C.levels);
  REQUIRE(config["heads"] == C.heads);
  REQUIRE(config["d_model"] == C.d_model);
  REQUIRE(config["blocks"] == C.blocks);
  REQUIRE(config["node_mask"] == hattn::value_name(C.node_mask));
  // The variant fields; fixtures of the seed's model do not name them.
  REQUIRE(config.value("node_combine", "replace") == hattn::value_name(C.node_combine));
  REQUIRE(config.value("summaries", 0) == C.summaries);
  REQUIRE(config.value("mixer", "hierarchical") == hattn::value_name(C.mixer));
  REQUIRE(config.value("seed_compat", false) == C.seed_compat);
  const Index V = config["vocab_size"], S = config["sequence_length"], B = config["batch"], Tn = config["tokens"];
  static constexpr bool is_float = std::is_same_v<T, float>;
  const fe::DecoderBounds fb = float_bounds(config);
  constexpr double lr = 1e-3;  // the fixtures' Adam steps
  INFO(name << (is_float ? " (float)" : " (double)") << ": gamma forward " << fb.forward << ", backward "
            << fb.backward);
  // The bound entry i of `ref` is held to: `float_bound(i)` for the float model; for the double
  // model, whose error is the reference's float32 storage (u = 6e-8 relative), 1e-6 (|ref| + 1e-3
  // scale), the scale being max|ref| or, for a gradient, its module's largest gradient: a gradient
  // that is exactly zero in exact arithmetic (a query whose row sees one key, in a row without a
  // target) is stored as 0 and computed as rounding noise of the module's other gradients.
  const auto bound_for = [&](const std::vector<float>& ref, auto float_bound, double scale = -1) {
    const double atol = is_float ? 0.0 : 1e-3 * (scale >= 0 ? scale : max_abs(ref));
    return [&ref, float_bound, atol](std::size_t i) {
      return is_float ? float_bound(i) : 1e-6 * (std::abs(double(ref[i])) + atol);
    };
  };
  // Worst error / bound per group, printed for the float model (-1: the fixture has no such group).
  double worst_outputs = 0, worst_grads = -1, worst_adam = -1;

  hattn::Decoder<C, T> model(V, S, 99);
  for (const auto& p : model.parameters()) {
    const auto v = file.read<float>("param." + p.name);
    REQUIRE(Index(v.size()) == p.size());
    std::copy(v.begin(), v.end(), p.value);
  }
  const auto ids_v = file.read<std::int32_t>("input.ids"), tgt_v = file.read<std::int32_t>("input.targets");
  const hattn::View<const std::int32_t, 2> ids(ids_v.data(), B, Tn), targets(tgt_v.data(), B, Tn);

  model.zero_grad();
  const T loss = model.forward(ids, targets, /*dropout=*/false);
  const auto loss_ref = file.read<float>("output.loss");
  const auto logits_ref = file.read<float>("output.logits"), probs_ref = file.read<float>("output.probs");
  const double logit_scale = max_abs(logits_ref);
  // The loss is a mean of log-sum-exps minus logits: each within gamma_forward of the logits' scale.
  CHECK(std::abs(double(loss) - loss_ref[0]) <=
        (is_float ? fb.forward * (std::abs(loss_ref[0]) + 2 * logit_scale) : 1e-6 * std::abs(loss_ref[0])));
  const auto logits = model.last_logits();
  const double r_logits = worst_over_bound(logits.data(), logits_ref, bound_for(logits_ref, [&](std::size_t i) {
    return fb.forward * (std::abs(logits_ref[i]) + logit_scale);
  }));
  CHECK(r_logits <= 1);
  // p = exp(z - lse): an error e in z and in lse moves p by about p (2 e).
  const auto probs = model.predict(ids);
  const double r_probs = worst_over_bound(probs.data(), probs_ref, bound_for(probs_ref, [&](std::size_t i) {
    return fb.forward * std::abs(probs_ref[i]) * (1 + 4 * logit_scale) + fb.forward * 1e-3;
  }));
  CHECK(r_probs <= 1);
  worst_outputs = std::max(r_logits, r_probs);

  const auto report = [&] {
    if (!is_float) return;
    std::printf("%s (float): worst error / bound: outputs %.3g", name.c_str(), worst_outputs);
    if (worst_grads >= 0) std::printf(", gradients %.3g", worst_grads);
    if (worst_adam >= 0) std::printf(", Adam weights %.3g", worst_adam);
    std::printf("\n");
  };
  model.backward();
  if (!file.contains("grad.linear.weight")) return report();
  // Gradient bounds: gamma_backward (|ref| + the module's largest reference gradient), per parameter.
  std::map<std::string, double> module_scale;
  std::map<std::string, std::vector<float>> grad_ref;
  for (const auto& p : model.parameters()) {
    if (!p.trainable()) continue;
    grad_ref[p.name] = file.read<float>("grad." + p.name);
    double& m = module_scale[fe::module_of(p.name)];
    m = std::max(m, max_abs(grad_ref[p.name]));
  }
  // The gradient bound of every entry of parameter `name` (empty: not trainable), computed once.
  const auto grad_bounds = [&](const std::string& name) {
    std::vector<double> bounds;
    if (!grad_ref.contains(name)) return bounds;
    const auto& ref = grad_ref.at(name);
    const double scale = module_scale.at(fe::module_of(name));
    bounds.reserve(ref.size());
    for (float g : ref) bounds.push_back(fb.backward * (std::abs(double(g)) + scale));
    return bounds;
  };
  for (const auto& p : model.parameters()) {
    if (!p.trainable()) continue;
    const auto& ref = grad_ref.at(p.name);
    if (p.name.ends_with("W_k.bias")) {
      // Softmax ignores the q . b_k added to a whole score row: the true gradient is exactly 0.
      // hattn returns exactly 0; PyTorch's float64 value is rounding noise.
      INFO(p.name);
      CHECK(std::all_of(p.grad, p.grad + p.size(), [](T g) { return g == T(0); }));
      CHECK(std::all_of(ref.begin(), ref.end(), [](float g) { return std::abs(g) < 1e-12f; }));
      continue;
    }
    const auto bounds = grad_bounds(p.name);
    Index at = 0;
    const double r = worst_over_bound(p.grad, ref, bound_for(ref, [&](std::size_t i) { return bounds[i]; },
                                                             module_scale.at(fe::module_of(p.name))),
                                      &at);
    INFO("gradient " << p.name << " entry " << at << ": worst error / tolerance " << r);
    CHECK(r <= 1);
    worst_grads = std::max(worst_grads, r);
  }

  if (!file.contains("adam3.linear.weight")) return report();
  // Restart from the fixture's weights: 3 steps of forward, backward, Adam (lr 1e-3).
  for (const auto& p : model.parameters()) {
    const auto v = file.read<float>("param." + p.name);
    std::copy(v.begin(), v.end(), p.value);
  }
  hattn::Adam<T> adam(model.parameters(), {.lr = lr});
  for (int step = 0; step < 3; ++step) {
    model.zero_grad();
    model.forward(ids, targets, false);
    model.backward();
    adam.step();
  }
  for (const auto& p : model.parameters()) {
    const auto ref = file.read<float>("adam3." + p.name);
    // Adam's step m / (sqrt(v) + eps) has magnitude at most about 1 and moves by about 2 e / |g| when
    // the gradient g moves by e (at most 2: a step flips sign at worst). Three steps of lr, plus the
    // float rounding of w - lr * step (a few u |w|). The first step's gradient stands in for all three
    // (the weights move by at most 3 lr).
    const auto bounds = grad_bounds(p.name);  // empty for the position table
    const auto adam_bound = [&](std::size_t i) {
      double step_error = 0;
      if (!bounds.empty()) {
        const double g = std::abs(double(grad_ref.at(p.name)[i]));
        step_error = g > 0 ? std::min(2.0, 2 * bounds[i] / g) : 2.0;
      }
      return 3 * lr * step_error + 8 * std::ldexp(1.0, -24) * std::abs(ref[i]);
    };
    Index at = 0;
    const double r = worst_over_bound(p.value, ref, bound_for(ref, adam_bound), &at);
    INFO("after 3 Adam steps: " << p.name << " entry " << at << ": worst error / tolerance " << r);
    CHECK(r <= 1);
    worst_adam = std::max(worst_adam, r);
  }
  report();
}

}  // namespace hattn::test::parity
