// Parity with the PyTorch reference (tools/hattn_reference.py, fixtures from tools/make_fixtures.py):
// logits, probabilities, loss, every gradient and the weights after 3 Adam steps, for the float
// model at float tolerances and for the double model at near-double tolerances.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "hattn/hattn.hpp"

#ifndef HATTN_FIXTURE_DIR
#error "HATTN_FIXTURE_DIR must name tests/fixtures"
#endif

using hattn::Index;
using hattn::NodeMask;

namespace {

// Largest elementwise error relative to rtol |ref| + atol, where atol = rtol * floor_frac * max|ref|:
// <= 1 passes. The floor keeps entries many orders below the tensor's scale (where float rounding of
// the sums dominates) from failing a relative test they cannot meet in any float implementation.
template <class T>
double worst_ratio(const T* got, const std::vector<float>& ref, double rtol, double floor_frac,
                   Index* where = nullptr) {
  double scale = 0;
  for (float r : ref) scale = std::max(scale, double(std::abs(r)));
  const double atol = rtol * floor_frac * scale;
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(double(got[i]) - double(ref[i])) / (rtol * std::abs(double(ref[i])) + atol + 1e-300);
    if (e > worst) {
      worst = e;
      if (where) *where = Index(i);
    }
  }
  return worst;
}

struct Tolerances {
  double outputs;  // logits, probabilities, loss: relative
  double grads;    // gradients: relative
  double adam;     // weights after 3 Adam steps: relative
  double floor;    // atol as a fraction of the tensor's largest entry, times the relative tolerance
};

template <hattn::Config C, class T>
void check_fixture(const std::string& name, const Tolerances& tol) {
  const auto file = hattn::io::read_safetensors(std::string(HATTN_FIXTURE_DIR) + "/" + name + ".safetensors");
  const auto config = nlohmann::json::parse(file.metadata().at("config"));
  REQUIRE(config["levels"] == C.levels);
  REQUIRE(config["heads"] == C.heads);
  REQUIRE(config["d_model"] == C.d_model);
  REQUIRE(config["blocks"] == C.blocks);
  REQUIRE(config["node_mask"] == hattn::node_mask_name(C.node_mask));
  const Index V = config["vocab_size"], S = config["sequence_length"], B = config["batch"], Tn = config["tokens"];

  hattn::Decoder<C, T> model(V, S, 99);
  for (const auto& p : model.parameters()) {
    const auto v = file.read<float>("param." + p.name);
    REQUIRE(Index(v.size()) == p.size());
    std::copy(v.begin(), v.end(), p.value);
  }
  const auto ids_v = file.read<std::int32_t>("input.ids"), tgt_v = file.read<std::int32_t>("input.targets");
  const hattn::View<const std::int32_t, 2> ids(ids_v.data(), B, Tn), targets(tgt_v.data(), B, Tn);

  INFO(name << (std::is_same_v<T, float> ? " (float)" : " (double)"));
  model.zero_grad();
  const T loss = model.forward(ids, targets, /*dropout=*/false);
  const auto loss_ref = file.read<float>("output.loss");
  CHECK(std::abs(double(loss) - loss_ref[0]) <= tol.outputs * std::abs(loss_ref[0]));
  const auto logits = model.last_logits();
  CHECK(worst_ratio(logits.data(), file.read<float>("output.logits"), tol.outputs, tol.floor) <= 1);
  const auto probs = model.predict(ids);
  CHECK(worst_ratio(probs.data(), file.read<float>("output.probs"), tol.outputs, tol.floor) <= 1);

  model.backward();
  if (file.contains("grad.linear.weight")) {
    for (const auto& p : model.parameters()) {
      if (!p.trainable()) continue;
      if (p.name.ends_with("W_k.bias")) {
        // Softmax ignores the q . b_k added to a whole score row: the true gradient is exactly 0.
        // hattn returns exactly 0; PyTorch's float64 value is rounding noise.
        const auto ref = file.read<float>("grad." + p.name);
        INFO(p.name);
        CHECK(std::all_of(p.grad, p.grad + p.size(), [](T g) { return g == T(0); }));
        CHECK(std::all_of(ref.begin(), ref.end(), [](float g) { return std::abs(g) < 1e-12f; }));
        continue;
      }
      Index at = 0;
      const double r = worst_ratio(p.grad, file.read<float>("grad." + p.name), tol.grads, tol.floor, &at);
      INFO("gradient " << p.name << " entry " << at << ": worst error / tolerance " << r);
      CHECK(r <= 1);
    }
  }

  if (file.contains("adam3.linear.weight")) {
    // Restart from the fixture's weights: 3 steps of forward, backward, Adam (lr 1e-3).
    for (const auto& p : model.parameters()) {
      const auto v = file.read<float>("param." + p.name);
      std::copy(v.begin(), v.end(), p.value);
    }
    hattn::Adam<T> adam(model.parameters(), {.lr = 1e-3});
    for (int step = 0; step < 3; ++step) {
      model.zero_grad();
      model.forward(ids, targets, false);
      model.backward();
      adam.step();
    }
    for (const auto& p : model.parameters()) {
      Index at = 0;
      const double r = worst_ratio(p.value, file.read<float>("adam3." + p.name), tol.adam, tol.floor, &at);
      INFO("after 3 Adam steps: " << p.name << " entry " << at << ": worst error / tolerance " << r);
      CHECK(r <= 1);
    }
  }
}

template <class T>
void check_all(const Tolerances& tol) {
  check_fixture<hattn::Config{.levels = 1, .heads = 1, .d_model = 8}, T>("l1_h1_d8", tol);
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 16, .node_mask = NodeMask::full}, T>(
      "l2_h2_d16_pad_full", tol);
  check_fixture<hattn::Config{.levels = 3, .heads = 4, .d_model = 16, .blocks = 2}, T>("l3_h4_d16_blocks2", tol);
  check_fixture<hattn::Config{.levels = 5, .heads = 2, .d_model = 16}, T>("l5_h2_d16", tol);
  check_fixture<hattn::Config{.levels = 5, .heads = 4, .d_model = 32, .node_mask = NodeMask::full}, T>(
      "l5_h4_d32_pad_full", tol);
  check_fixture<hattn::Config{.levels = 1, .heads = 4, .d_model = 64}, T>("l1_h4_d64_pad", tol);
  check_fixture<hattn::Config{.levels = 2, .heads = 1, .d_model = 8, .blocks = 2}, T>("l2_h1_d8_blocks2_pad", tol);
}

}  // namespace

TEST_CASE("the float model matches PyTorch: outputs 1e-5, gradients 1e-4, Adam weights 1e-5", "[parity]") {
  check_all<float>({.outputs = 1e-5, .grads = 1e-4, .adam = 1e-5, .floor = 1e-1});
}

TEST_CASE("the double model matches PyTorch's float64 results to float32 storage precision", "[parity]") {
  check_all<double>({.outputs = 1e-6, .grads = 1e-6, .adam = 1e-6, .floor = 1e-3});
}
