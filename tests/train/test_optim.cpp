// Optimizers, clipping and the learning-rate schedule: parity with torch.optim.Adam / AdamW,
// clip_grad_norm_ and the warmup + cosine formula (fixtures from tools/make_optimizer_fixtures.py),
// the default weight-decay selection on a real model, and exact errors.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <regex>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"
#include "hattn/train/adamw.hpp"
#include "hattn/train/clip.hpp"
#include "hattn/train/schedule.hpp"
#include "support/float_error.hpp"
#include "support/gradcheck.hpp"

#ifndef HATTN_FIXTURE_DIR
#error "HATTN_FIXTURE_DIR must name tests/fixtures"
#endif

using hattn::Index;
using hattn::Parameter;
namespace fe = hattn::test::fe;

namespace {

hattn::io::SafetensorsFile fixture(const std::string& name) {
  return hattn::io::read_safetensors(std::string(HATTN_FIXTURE_DIR) + "/" + name);
}

// The fixture's tensors, with a fixed (gradient-less) tensor inserted second: optimizers and
// clipping must skip it and leave it as it is.
template <class T>
struct Toy {
  std::vector<std::vector<T>> values, grads;
  std::vector<Parameter<T>> params;

  Toy(const nlohmann::json& config, const hattn::io::SafetensorsFile& file) {
    const auto& list = config.at("params");
    values.resize(list.size() + 1);
    grads.resize(list.size() + 1);
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string name = list[i].at("name");
      const auto start = file.read<float>("param." + name);
      values[i].assign(start.begin(), start.end());
      grads[i].assign(start.size(), T(0));
      params.push_back({name, list[i].at("shape").get<std::vector<Index>>(), values[i].data(), grads[i].data(),
                        hattn::Init::zeros, 0});
      if (i == 0) {
        values.back() = {T(0.5), T(-1.5), T(2.5)};
        params.push_back({"pos.weight", {1, 3}, values.back().data(), nullptr, hattn::Init::sinusoid, 0});
      }
    }
  }

  void set_grads(const hattn::io::SafetensorsFile& file, int step) {
    for (auto& p : params)
      if (p.trainable()) {
        const auto g = file.read<float>("grad." + std::to_string(step) + "." + p.name);
        std::copy(g.begin(), g.end(), p.grad);
      }
  }
};

// Largest |got - ref| / (rtol |ref| + atol): <= 1 passes.
template <class T, class R>
double worst_ratio(const T* got, const std::vector<R>& ref, double rtol, double atol) {
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    worst = std::max(worst, std::abs(double(got[i]) - double(ref[i])) / (rtol * std::abs(double(ref[i])) + atol));
  return worst;
}

// The exact trajectory of one element under hattn's float Adam / AdamW step, with a running error
// bound of its float operations (fe::Bounded), in the order detail::AdamBase::update computes them.
struct BoundedAdam {
  fe::Bounded p, m, v;
  void step(fe::Bounded g, const hattn::AdamWOptions& o, std::int64_t t, double shrink) {
    using B = fe::Bounded;
    const double bc1 = 1 - std::pow(o.beta1, double(t)), bc2_sqrt = std::sqrt(1 - std::pow(o.beta2, double(t)));
    if (shrink != 1.0) p = p * B::to_float(shrink);
    m = m * B::to_float(o.beta1) + B::to_float(1 - o.beta1) * g;
    v = v * B::to_float(o.beta2) + B::to_float(1 - o.beta2) * g * g;
    p = p + B::to_float(-o.lr / bc1) * m / (sqrt(v) / B::to_float(bc2_sqrt) + B::to_float(o.eps));
  }
};

template <class T>
void check_run(const std::string& run) {
  const auto file = fixture("optim_adam.safetensors");
  const auto config = nlohmann::json::parse(file.metadata().at("config"));
  const auto& spec = config.at("runs").at(run);
  const bool adamw = spec.at("optimizer") == "adamw", clip = spec.at("clip"), scheduled = spec.at("scheduled");
  static constexpr bool is_float = std::is_same_v<T, float>;
  INFO("run " << run << (is_float ? " (float)" : " (double)"));

  Toy<T> toy(config, file);
  const double lr = config.at("lr"), max_norm = config.at("max_norm");
  const hattn::AdamWOptions wopt{lr, config.at("beta1"), config.at("beta2"), config.at("eps"), config.at("weight_decay")};
  hattn::Adam<T> adam(toy.params, {lr, wopt.beta1, wopt.beta2, wopt.eps});
  hattn::AdamW<T> adamw_opt(toy.params, wopt);
  const auto& sc = config.at("schedule");
  const hattn::WarmupCosine schedule{sc.at("peak_lr"), sc.at("min_lr"), sc.at("warmup_steps"), sc.at("total_steps")};
  const auto lrs = file.read<double>("lr." + run);
  // Both precisions are compared with the float64 run on the same float32 inputs: the double one
  // to 1e-12 (measured within 1.4e-16), the float one to its float error bound.
  const std::vector<double> norms = clip ? file.read<double>("f64." + run + ".norm") : std::vector<double>{};
  std::vector<std::vector<BoundedAdam>> exact(toy.params.size());  // (registry entries) per element
  Index trainable = 0;
  for (std::size_t i = 0; i < toy.params.size(); ++i) {
    for (Index j = 0; j < toy.params[i].size(); ++j)
      exact[i].push_back({fe::Bounded::exact(toy.params[i].value[j]), {}, {}});
    if (toy.params[i].trainable()) trainable += toy.params[i].size();
  }
  fe::Worst worst;

  for (int k = 0; k < int(config.at("steps")); ++k) {
    INFO("step " << k);
    toy.set_grads(file, k);
    const double step_lr = scheduled ? schedule.lr(k) : lr;
    CHECK(step_lr == Approx(lrs[std::size_t(k)]).epsilon(1e-15));
    // The float run's clipping factor: max_norm / (norm + 1e-6), a double computation from a sum
    // of squares of floats (exact squares, gamma_(n+2) in 2^-53 with the sqrt, add and divide),
    // rounded to float.
    fe::Bounded factor = fe::Bounded::exact(1);
    if (clip) {
      const double norm = hattn::clip_grad_norm(toy.params, max_norm);
      // The norm in double (both runs): a sum of n squares and a sqrt, within gamma_(n+1) in 2^-53 each.
      CHECK(std::abs(norm - norms[std::size_t(k)]) <= 2 * fe::gamma(double(trainable + 1), fe::u_double) * norm);
      const double coef = max_norm / (norms[std::size_t(k)] + 1e-6);
      if (coef < 1) factor = {coef, fe::u * coef + 3 * fe::gamma(double(trainable + 2), fe::u_double) * coef};
    }
    if (adamw) {
      adamw_opt.set_lr(step_lr);
      adamw_opt.step();
    } else {
      adam.set_lr(step_lr);
      adam.step();
    }
    hattn::AdamWOptions step_options = wopt;
    step_options.lr = step_lr;
    const double shrink = 1 - step_lr * wopt.weight_decay;
    for (std::size_t i = 0; i < toy.params.size(); ++i) {
      const auto& p = toy.params[i];
      if (!p.trainable()) {
        CHECK(toy.values.back() == std::vector<T>{T(0.5), T(-1.5), T(2.5)});
        continue;
      }
      const auto ref = file.read<double>("f64." + run + "." + std::to_string(k) + "." + p.name);
      const auto g = file.read<float>("grad." + std::to_string(k) + "." + p.name);
      INFO(p.name);
      if (!is_float) {
        CHECK(worst_ratio(p.value, ref, 1e-12, 0.0) <= 1);
        continue;
      }
      for (Index j = 0; j < p.size(); ++j) {
        BoundedAdam& e = exact[i][std::size_t(j)];
        const fe::Bounded gj = clip && factor.value < 1 ? fe::Bounded::exact(g[std::size_t(j)]) * factor
                                                        : fe::Bounded::exact(g[std::size_t(j)]);
        e.step(gj, step_options, k + 1, adamw && adamw_opt.decays(i) ? shrink : 1.0);
        // The float64 run's own error is this bound with 2^-53 for 2^-24 (its constants are exact).
        INFO("entry " << j << ": " << p.value[j] << " vs " << ref[std::size_t(j)] << ", bound " << e.p.error);
        CHECK(worst(p.value[j], ref[std::size_t(j)], e.p.error * (1 + fe::u_double / fe::u)) <= 1);
      }
    }
  }
  CHECK((adamw ? adamw_opt.steps() : adam.steps()) == 5);
  if (is_float) worst.print("Adam / AdamW float, run " + run);
}

std::vector<double> snapshot(const std::vector<Parameter<double>>& params) {
  std::vector<double> all;
  for (const auto& p : params) all.insert(all.end(), p.value, p.value + p.size());
  return all;
}

// Three tensors of double gradients and a fixed tensor, as views into owned storage.
struct Grads {
  std::vector<double> a_v{1, 2}, a_g{3, 4}, b_v{0}, b_g{12}, f_v{7, 7};
  std::vector<Parameter<double>> params{{"a.weight", {2}, a_v.data(), a_g.data(), hattn::Init::zeros, 0},
                                        {"fixed", {2}, f_v.data(), nullptr, hattn::Init::zeros, 0},
                                        {"b.bias", {1}, b_v.data(), b_g.data(), hattn::Init::zeros, 0}};
};

}  // namespace

TEST_CASE("Adam and AdamW follow torch.optim, with and without clipping and a schedule", "[optim][parity]") {
  for (const char* run : {"adam", "adam_clip", "adamw", "adamw_clip", "adamw_schedule_clip"}) {
    check_run<float>(run);
    check_run<double>(run);
  }
}

TEST_CASE("the fixture's decayed tensors are those default_weight_decay selects", "[optim]") {
  const auto file = fixture("optim_adam.safetensors");
  const auto config = nlohmann::json::parse(file.metadata().at("config"));
  Toy<float> toy(config, file);
  hattn::AdamW<float> opt(toy.params);
  CHECK(opt.decayed_names() == std::vector<std::string>{"fc.weight"});
  for (const auto& entry : config.at("params")) {
    const auto it = std::find_if(toy.params.begin(), toy.params.end(),
                                 [&](const auto& p) { return p.name == entry.at("name"); });
    CHECK(hattn::default_weight_decay(*it) == entry.at("decayed").get<bool>());
  }
  CHECK_FALSE(opt.decays(1));  // the fixed tensor
}

TEST_CASE("default_weight_decay selects exactly the linear weights of a Decoder", "[optim]") {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .blocks = 2}> model(17, 16);
  hattn::AdamW<float> opt(model.parameters(), {.weight_decay = 0.1});
  const std::regex linear_weight(R"(.*(W_[qkvo]|feed_forward\.[02])\.weight|linear\.weight)");
  std::size_t expected = 0;
  for (std::size_t k = 0; k < model.parameters().size(); ++k) {
    const auto& p = model.parameters()[k];
    INFO(p.name);
    const bool linear = std::regex_match(p.name, linear_weight);
    CHECK(opt.decays(k) == linear);
    expected += linear;
  }
  // Per block: 2 hierarchical attentions x (leaf + 2 levels) x 4 projections, plus 2 feed-forward
  // layers; then the head.
  CHECK(expected == 2 * (2 * 3 * 4 + 2) + 1);
  CHECK(opt.decayed_names().size() == expected);
}

TEST_CASE("AdamW without decay is Adam, bitwise", "[optim]") {
  hattn::Decoder<hattn::Config{.levels = 1, .heads = 1, .d_model = 8}, double> a(11, 8, 3), b(11, 8, 3), c(11, 8, 3);
  hattn::Adam<double> adam(a.parameters(), {.lr = 1e-2});
  hattn::AdamW<double> no_decay(b.parameters(), {.lr = 1e-2, .weight_decay = 0});
  hattn::AdamW<double> decay_none(c.parameters(), {.lr = 1e-2, .weight_decay = 0.5},
                                  [](const Parameter<double>&) { return false; });
  hattn::Generator gen(5);
  for (int step = 0; step < 3; ++step) {
    for (std::size_t k = 0; k < a.parameters().size(); ++k) {
      const auto &pa = a.parameters()[k], &pb = b.parameters()[k], &pc = c.parameters()[k];
      if (!pa.trainable()) continue;
      for (Index i = 0; i < pa.size(); ++i) pa.grad[i] = pb.grad[i] = pc.grad[i] = gen.normal();
    }
    adam.step();
    no_decay.step();
    decay_none.step();
  }
  CHECK(snapshot(a.parameters()) == snapshot(b.parameters()));
  CHECK(snapshot(a.parameters()) == snapshot(c.parameters()));
  CHECK(adam.first_moments() == no_decay.first_moments());
  CHECK(adam.second_moments() == decay_none.second_moments());
}

TEST_CASE("AdamW decays the selected tensors by 1 - lr * weight_decay before the Adam update", "[optim]") {
  // Zero gradients: the Adam update is exactly zero, so only the decay moves the values.
  Grads g;
  g.a_g = {0, 0};
  g.b_g = {0};
  g.b_v = {4};
  hattn::AdamW<double> opt(g.params, {.lr = 0.5, .weight_decay = 0.1},
                           [](const Parameter<double>& p) { return p.name.ends_with(".weight"); });
  opt.step();
  CHECK(g.a_v == std::vector<double>{1 * 0.95, 2 * 0.95});
  CHECK(g.b_v == std::vector<double>{4});
  CHECK(g.f_v == std::vector<double>{7, 7});
  opt.set_lr(0.2);
  opt.step();
  CHECK(g.a_v[1] == 2 * 0.95 * (1 - 0.2 * 0.1));
  CHECK(opt.lr() == 0.2);
  CHECK(opt.steps() == 2);
}

TEST_CASE("optimizer options are validated with exact messages", "[optim][errors]") {
  Grads g;
  using hattn::Adam;
  using hattn::AdamW;
  REQUIRE_THROWS_WITH(Adam<double>(g.params, {.lr = -1}), "Adam: invalid options: lr -1, beta1 0.9, beta2 0.999, eps 1e-08");
  REQUIRE_THROWS_WITH(AdamW<double>(g.params, {.beta2 = 1}),
                      "AdamW: invalid options: lr 0.001, beta1 0.9, beta2 1, eps 1e-08");
  REQUIRE_THROWS_WITH(AdamW<double>(g.params, {.weight_decay = -0.1}), "AdamW: weight_decay must be finite and >= 0, got -0.1");
  AdamW<double> opt(g.params);
  REQUIRE_THROWS_WITH(opt.set_lr(-2), "AdamW: learning rate must be finite and >= 0, got -2");
  REQUIRE_THROWS_WITH(opt.set_lr(std::numeric_limits<double>::quiet_NaN()),
                      "AdamW: learning rate must be finite and >= 0, got nan");
  CHECK(opt.lr() == 1e-3);
}

TEST_CASE("clip_grad_norm: the global norm, scaling only above max_norm, disabled at <= 0", "[clip]") {
  SECTION("norm over every trainable tensor, fixed tensors skipped") {
    Grads g;
    CHECK(hattn::grad_norm(g.params) == 13);  // sqrt(3^2 + 4^2 + 12^2)
  }
  SECTION("below max_norm nothing changes") {
    Grads g;
    CHECK(hattn::clip_grad_norm(g.params, 26.0) == 13);
    CHECK(g.a_g == std::vector<double>{3, 4});
    CHECK(g.b_g == std::vector<double>{12});
    CHECK(hattn::clip_grad_norm(g.params, 13.0) == 13);  // coef = 13 / (13 + 1e-6) < 1: clipped
    CHECK(g.a_g[0] == 3 * (13 / (13 + 1e-6)));
  }
  SECTION("above max_norm every gradient is scaled by max_norm / (norm + 1e-6)") {
    Grads g;
    CHECK(hattn::clip_grad_norm(g.params, 6.5) == 13);
    const double coef = 6.5 / (13 + 1e-6);
    CHECK(g.a_g == std::vector<double>{3 * coef, 4 * coef});
    CHECK(g.b_g == std::vector<double>{12 * coef});
    CHECK(hattn::grad_norm(g.params) == Approx(6.5).epsilon(1e-6));
    CHECK(g.f_v == std::vector<double>{7, 7});
  }
  SECTION("max_norm <= 0 disables clipping but returns the norm") {
    Grads g;
    CHECK(hattn::clip_grad_norm(g.params, 0.0) == 13);
    CHECK(hattn::clip_grad_norm(g.params, -1.0) == 13);
    CHECK(g.a_g == std::vector<double>{3, 4});
  }
  SECTION("a non-finite norm is returned and nothing is scaled") {
    Grads g;
    g.b_g[0] = std::numeric_limits<double>::infinity();
    CHECK(std::isinf(hattn::clip_grad_norm(g.params, 1.0)));
    g.b_g[0] = std::numeric_limits<double>::quiet_NaN();
    CHECK(std::isnan(hattn::clip_grad_norm(g.params, 1.0)));
    CHECK(g.a_g == std::vector<double>{3, 4});
  }
}

TEST_CASE("the float gradient norm is summed in double and does not depend on the thread count", "[clip]") {
  // 3 tensors over several reduction blocks; float sums of squares this long would drift.
  std::vector<std::vector<float>> vals(3), grads(3);
  std::vector<Parameter<float>> params;
  hattn::Generator gen(11);
  const Index sizes[] = {70001, 5, 40000};
  double exact = 0;
  for (int k = 0; k < 3; ++k) {
    vals[k].assign(std::size_t(sizes[k]), 0.f);
    grads[k].resize(std::size_t(sizes[k]));
    for (auto& x : grads[k]) {
      x = float(gen.uniform(-1, 1));
      exact += double(x) * double(x);
    }
    std::string name = std::to_string(k);  // appended, not "t" + ...: GCC 12 warns falsely (-Wrestrict)
    name.insert(name.begin(), 't');
    params.push_back({name, {sizes[k]}, vals[k].data(), grads[k].data(), hattn::Init::zeros, 0});
  }
  const double one = hattn::test::with_threads(1, [&] { return hattn::grad_norm(params); });
  const double two = hattn::test::with_threads(2, [&] { return hattn::grad_norm(params); });
  CHECK(one == two);
  CHECK(one == Approx(std::sqrt(exact)).epsilon(1e-13));
  hattn::test::with_threads(2, [&] { return hattn::clip_grad_norm(params, 1.0); });
  // Clipped: every float gradient times the float rounding of 1 / (norm + 1e-6) (u), each product
  // rounded (u); the norms' double sums add gamma_(n+3) in 2^-53 (the coefficient's and this one's).
  const Index n = 70001 + 5 + 40000;
  const double clipped = std::sqrt(exact) / (std::sqrt(exact) + 1e-6);
  CHECK(std::abs(hattn::grad_norm(params) - clipped) <=
        (2 * fe::u + 2 * fe::gamma(double(n + 3), fe::u_double)) * clipped);
}

TEST_CASE("WarmupCosine matches the fixture's values", "[schedule]") {
  const auto file = fixture("optim_schedule.safetensors");
  const auto configs = nlohmann::json::parse(file.metadata().at("config"));
  REQUIRE(configs.size() == 5);
  for (std::size_t i = 0; i < configs.size(); ++i) {
    const auto& c = configs[i];
    const hattn::WarmupCosine s{c.at("peak_lr"), c.at("min_lr"), c.at("warmup_steps"), c.at("total_steps")};
    const auto ref = file.read<double>("schedule." + std::to_string(i));
    REQUIRE(ref.size() == c.at("count").get<std::size_t>());
    for (std::size_t k = 0; k < ref.size(); ++k) {
      INFO("schedule " << i << " step " << k);
      CHECK(s.lr(std::int64_t(k)) == Approx(ref[k]).epsilon(1e-14).margin(0));
    }
  }
}

TEST_CASE("WarmupCosine edge cases: warmup 0, warmup only, past the total", "[schedule]") {
  const hattn::WarmupCosine s{.peak_lr = 1.0, .min_lr = 0.1, .warmup_steps = 4, .total_steps = 14};
  CHECK(s.lr(0) == 0.25);
  CHECK(s.lr(3) == 1.0);
  CHECK(s.lr(4) == 1.0);                                  // decay starts from the peak
  CHECK(s.lr(9) == Approx(0.55).epsilon(1e-15));          // halfway: (peak + min) / 2
  CHECK(s(13) == Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.9))).epsilon(1e-15));
  CHECK(s.lr(14) == 0.1);
  CHECK(s.lr(1000) == 0.1);
  for (std::int64_t k = 4; k < 14; ++k) CHECK(s.lr(k + 1) < s.lr(k));

  const hattn::WarmupCosine no_warmup{.peak_lr = 2.0, .min_lr = 0, .warmup_steps = 0, .total_steps = 10};
  CHECK(no_warmup.lr(0) == 2.0);
  CHECK(no_warmup.lr(10) == 0.0);
  const hattn::WarmupCosine warmup_only{.peak_lr = 2.0, .min_lr = 0.5, .warmup_steps = 4, .total_steps = 4};
  CHECK(warmup_only.lr(3) == 2.0);
  CHECK(warmup_only.lr(4) == 0.5);
}

TEST_CASE("WarmupCosine rejects bad options and steps with exact messages", "[schedule][errors]") {
  REQUIRE_THROWS_WITH((hattn::WarmupCosine{.peak_lr = 1, .min_lr = 2, .warmup_steps = 0, .total_steps = 5}.lr(0)),
                      "WarmupCosine: need 0 <= min_lr <= peak_lr, got min_lr 2, peak_lr 1");
  REQUIRE_THROWS_WITH((hattn::WarmupCosine{.peak_lr = 1, .min_lr = 0, .warmup_steps = 6, .total_steps = 5}.lr(0)),
                      "WarmupCosine: need 0 <= warmup_steps <= total_steps, got warmup_steps 6, total_steps 5");
  REQUIRE_THROWS_WITH((hattn::WarmupCosine{}.lr(-1)), "WarmupCosine: step must be >= 0, got -1");
}
