// Gradient accumulation (micro-batches weighted by their counted targets equal one large batch),
// and the training loop: the loss falls, a NaN stops it before the update, a saved state resumes
// bit-exactly, and bad options are rejected with exact messages.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"
#include "hattn/data/dataset.hpp"
#include "hattn/train/trainer.hpp"
#include "support/float_error.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using Ids = hattn::Tensor<std::int32_t, 2>;
namespace fe = hattn::test::fe;

namespace {

constexpr hattn::Config tiny{.levels = 1, .heads = 1, .d_model = 8};

template <class Model>
std::vector<typename Model::Scalar> grads_of(const Model& m) {
  std::vector<typename Model::Scalar> g;
  for (const auto& p : m.parameters())
    if (p.trainable()) g.insert(g.end(), p.grad, p.grad + p.size());
  return g;
}

template <class Model>
std::vector<typename Model::Scalar> values_of(const Model& m) {
  std::vector<typename Model::Scalar> v;
  for (const auto& p : m.parameters()) v.insert(v.end(), p.value, p.value + p.size());
  return v;
}

// max |a - b| / max |b|.
template <class T>
double relative_error(const std::vector<T>& a, const std::vector<T>& b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

// 4 sequences of 8 with next-token targets and uneven extra -100s: rows 0-1 count 5 + 7 = 12
// targets, rows 2-3 count 2 + 6 = 8.
void make_batch(Ids& ids, Ids& targets) {
  hattn::Generator g(17);
  for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = std::int32_t(g.below(13));
  for (Index b = 0; b < 4; ++b)
    for (Index t = 0; t < 8; ++t) targets(b, t) = t + 1 < 8 ? ids(b, t + 1) : -100;
  for (Index t : {1, 4}) targets(0, t) = -100;
  for (Index t : {0, 2, 3, 5, 6}) targets(2, t) = -100;
  targets(3, 3) = -100;
}

// Per trainable entry, in grads_of order: the largest |gradient| of its module (fe::module_of).
template <class Model>
std::vector<double> module_scales(const Model& m, const std::vector<typename Model::Scalar>& g) {
  std::map<std::string, double> scale;
  std::size_t at = 0;
  for (const auto& p : m.parameters()) {
    if (!p.trainable()) continue;
    double& s = scale[fe::module_of(p.name)];
    for (Index i = 0; i < p.size(); ++i) s = std::max(s, double(std::abs(g[at++])));
  }
  std::vector<double> out;
  for (const auto& p : m.parameters())
    if (p.trainable()) out.insert(out.end(), std::size_t(p.size()), scale[fe::module_of(p.name)]);
  return out;
}

double max_abs(const hattn::Tensor<float, 3>& t) {
  double m = 0;
  for (Index i = 0; i < t.size(); ++i) m = std::max(m, double(std::abs(t.data()[i])));
  return m;
}

// Double: within `tol` relative. Float: each of the two computations within test_parity's float
// error bounds of the exact values (fe::decoder_bounds for its batch), so they differ by at most
// the sum of their bounds: for a loss gamma_forward (|loss| + 2 max|logits|), for a gradient entry
// gamma_backward (|g| + its module's largest |g|), the micro-batches' terms weighted as they are
// added, plus the rounding of each micro-batch's scale and of the accumulation (2u |g_i|).
template <class T>
void check_accumulation(double tol) {
  static constexpr bool is_float = std::is_same_v<T, float>;
  hattn::Decoder<tiny, T> model(13, 8, 5);
  Ids ids(4, 8), targets(4, 8);
  make_batch(ids, targets);
  REQUIRE(hattn::count_targets(targets) == 20);
  const auto bounds = [](Index batch) {
    return fe::decoder_bounds(tiny.levels, tiny.heads, tiny.d_model, tiny.blocks, 13, double(batch), 8);
  };

  model.zero_grad();
  const double full_loss = double(model.forward(ids, targets, /*dropout=*/false));
  double loss_bound = 0;
  if constexpr (is_float) loss_bound = bounds(4).forward * (full_loss + 2 * max_abs(model.last_logits()));
  model.backward();
  const auto full = grads_of(model);
  std::vector<double> grad_bound(full.size(), 0.0);
  if constexpr (is_float) {
    const auto scale = module_scales(model, full);
    for (std::size_t j = 0; j < full.size(); ++j)
      grad_bound[j] = bounds(4).backward * (std::abs(double(full[j])) + scale[j]);
    // Each micro-batch's own scaled gradient, for its terms of the bound.
    for (Index i = 0; i < 2; ++i) {
      const hattn::View<const std::int32_t, 2> x(ids.data() + i * 16, 2, 8), y(targets.data() + i * 16, 2, 8);
      const double w = double(hattn::count_targets(y)) / 20.0;
      model.zero_grad();
      const double l = double(model.forward(x, y, false));
      loss_bound += w * bounds(2).forward * (l + 2 * max_abs(model.last_logits()));
      model.backward(T(w));
      const auto g = grads_of(model);
      const auto s = module_scales(model, g);
      for (std::size_t j = 0; j < g.size(); ++j)
        grad_bound[j] += (bounds(2).backward + 2 * fe::u) * std::abs(double(g[j])) + bounds(2).backward * s[j];
    }
  }

  // Micro-batches accumulate in place, each backward scaled by its share of the counted targets.
  double loss = 0;
  model.zero_grad();
  for (Index i = 0; i < 2; ++i) {
    const hattn::View<const std::int32_t, 2> x(ids.data() + i * 16, 2, 8), y(targets.data() + i * 16, 2, 8);
    const Index n = hattn::count_targets(y);
    CHECK(n == (i == 0 ? 12 : 8));
    const double l = double(model.forward(x, y, false));
    model.backward(T(double(n) / 20.0));
    loss += double(n) / 20.0 * l;
  }
  if constexpr (is_float) {
    fe::Worst worst;
    CHECK(worst(loss, full_loss, loss_bound) <= 1);
    const auto micro = grads_of(model);
    for (std::size_t j = 0; j < full.size(); ++j) {
      INFO("gradient entry " << j << ": " << micro[j] << " vs " << full[j] << ", bound " << grad_bound[j]);
      CHECK(worst(micro[j], full[j], grad_bound[j]) <= 1);
    }
    worst.print("micro-batch accumulation (float)");
  } else {
    CHECK(std::abs(loss - full_loss) <= tol * full_loss);
    CHECK(relative_error(grads_of(model), full) <= tol);
  }
  // The weighting matters: averaging the micro-batch gradients equally is measurably wrong.
  model.zero_grad();
  for (Index i = 0; i < 2; ++i) {
    const hattn::View<const std::int32_t, 2> x(ids.data() + i * 16, 2, 8), y(targets.data() + i * 16, 2, 8);
    model.forward(x, y, false);
    model.backward(T(0.5));
  }
  CHECK(relative_error(grads_of(model), full) > 1e-2);
}

std::vector<std::int32_t> corpus() {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "the quick brown fox jumps over the lazy dog. ";
  return std::vector<std::int32_t>(text.begin(), text.end());  // bytes (ASCII)
}

constexpr hattn::Config small{.levels = 2, .heads = 2, .d_model = 16};

hattn::TrainOptions small_options() {
  return {.steps = 12, .batch = 4, .micro_batches = 2, .lr = 1e-2, .min_lr = 1e-3, .warmup_steps = 3,
          .weight_decay = 0.1, .clip = 1.0, .dropout = true, .eval_every = 5, .eval_batches = 2, .seed = 9};
}

}  // namespace

TEST_CASE("micro-batches weighted by their counted targets give the large batch's gradient", "[trainer][accumulation]") {
  check_accumulation<float>(0);  // float error bounds
  check_accumulation<double>(1e-12);
}

TEST_CASE("a step with micro-batches equals a step with the whole batch, with and without dropout",
          "[trainer][accumulation][dropout]") {
  // With dropout, every micro-batch of a step runs at the step's dropout step and its sequences'
  // batch indices, so each sequence gets the mask it gets in the whole batch.
  const hattn::data::Dataset data(corpus(), 16);
  for (bool dropout : {false, true}) {
    INFO("dropout " << dropout);
    hattn::Decoder<tiny, double> one(256, 16, 2), two(256, 16, 2);
    hattn::TrainOptions o{.steps = 2, .batch = 4, .micro_batches = 1, .lr = 1e-2, .clip = 0.5, .dropout = dropout};
    hattn::Trainer t1(one, data, o);
    o.micro_batches = 4;
    hattn::Trainer t2(two, data, o);
    std::vector<double> loss1, loss2;
    t1.on_step = [&](const hattn::StepInfo& s) { loss1.push_back(s.loss); };
    t2.on_step = [&](const hattn::StepInfo& s) { loss2.push_back(s.loss); };
    CHECK(t1.run().status == hattn::TrainStatus::completed);
    CHECK(t2.run().status == hattn::TrainStatus::completed);
    REQUIRE(loss1.size() == 2);
    REQUIRE(loss2.size() == 2);
    CHECK(loss2[0] == Approx(loss1[0]).epsilon(1e-12));
    CHECK(loss2[1] == Approx(loss1[1]).epsilon(1e-12));
    CHECK(relative_error(values_of(two), values_of(one)) <= 1e-12);
    // One dropout step per optimizer step, however many forward passes it took.
    CHECK(one.step() == 2);
    CHECK(two.step() == 2);
    CHECK(two.first_sequence() == 0);
  }
}

namespace {

// A first training step's gradient as the trainer must form it, computed here from the model's own
// API: the batch of Generator(seed) (one draw per window, in row order; 32-token windows), micro-batch
// i its rows [starts[i], starts[i + 1]), each at dropout step 0 with its sequences' batch indices,
// into zeroed gradients, weighted by its share of the counted targets; then g0 + g1, + g2, ...
std::vector<float> ordered_micro_batch_sum(hattn::Decoder<small>& m, const hattn::data::Dataset& data,
                                           std::uint64_t seed, const std::vector<Index>& starts) {
  constexpr Index T = 32;
  const Index B = starts.back();
  hattn::Generator rng(seed);
  Ids inputs(B, T), targets(B, T);
  data.train_batch(inputs, targets, rng);
  const Index total = hattn::count_targets(targets);
  std::vector<float> sum;
  for (std::size_t i = 0; i + 1 < starts.size(); ++i) {
    const Index r0 = starts[i], rows = starts[i + 1] - r0;
    const hattn::View<const std::int32_t, 2> x(inputs.data() + r0 * T, rows, T), y(targets.data() + r0 * T, rows, T);
    m.set_step(0);
    m.set_first_sequence(std::uint64_t(r0));
    m.zero_grad();
    m.forward(x, y, true);
    m.backward(float(double(hattn::count_targets(y)) / double(total)));
    const auto g = grads_of(m);
    if (i == 0) {
      sum = g;
    } else {
      for (std::size_t j = 0; j < g.size(); ++j) sum[j] = sum[j] + g[j];
    }
  }
  return sum;
}

}  // namespace

TEST_CASE("micro-batches: each gradient into zeroed buffers, added in micro-batch order, bitwise",
          "[trainer][accumulation][dropout]") {
  // The sum a data-parallel run forms from its ranks' gradients in rank order: g0 + g1, then + g2.
  const hattn::data::Dataset data(corpus(), 32);
  const hattn::TrainOptions o{.steps = 1, .batch = 6, .micro_batches = 3, .lr = 1e-2, .clip = 0, .dropout = true,
                              .seed = 4};
  hattn::Decoder<small> trained(256, 32, 3), reference(256, 32, 3);
  hattn::Trainer trainer(trained, data, o);
  REQUIRE(trainer.run().status == hattn::TrainStatus::completed);

  const auto sum = ordered_micro_batch_sum(reference, data, o.seed, {0, 2, 4, 6});
  const auto left = grads_of(trained);  // AdamW reads the gradients and leaves them
  REQUIRE(left.size() == sum.size());
  CHECK(std::memcmp(left.data(), sum.data(), sum.size() * sizeof(float)) == 0);
}

TEST_CASE("uneven micro-batches: 8 sequences in 3 are 3, 3 and 2, summed in order, bitwise, and validation "
          "sees the same windows", "[trainer][accumulation][dropout]") {
  const hattn::data::Dataset data(corpus(), 32);
  const hattn::TrainOptions o{.steps = 1, .batch = 8, .micro_batches = 3, .lr = 1e-2, .clip = 0, .dropout = true,
                              .eval_every = 1, .eval_batches = 2, .seed = 5};
  hattn::Decoder<small> trained(256, 32, 3), reference(256, 32, 3);
  hattn::Trainer trainer(trained, data, o);
  std::vector<hattn::EvalInfo> evals;
  trainer.on_eval = [&](const hattn::EvalInfo& e) { evals.push_back(e); };
  REQUIRE(trainer.run().status == hattn::TrainStatus::completed);

  const auto sum = ordered_micro_batch_sum(reference, data, o.seed, {0, 3, 6, 8});
  const auto left = grads_of(trained);
  REQUIRE(left.size() == sum.size());
  CHECK(std::memcmp(left.data(), sum.data(), sum.size() * sizeof(float)) == 0);

  // Validation: windows 0 .. 15 in the same pieces, whatever the split; against one pass per batch.
  REQUIRE(evals.size() == 1);
  double weighted = 0;
  Index counted = 0;
  for (Index j = 0; j < 2; ++j) {
    Ids vi(8, 32), vt(8, 32);
    data.validation_batch(vi, vt, j);
    weighted += double(trained.forward(vi, vt, false)) * double(hattn::count_targets(vt));
    counted += hattn::count_targets(vt);
  }
  CHECK(evals[0].targets == counted);
  // Each row's cross-entropy is bitwise the same in either split (row-stable products); only the
  // float means differ. A mean of n >= 0 terms summed in float is within gamma_(n+1) of exact,
  // relatively, and n <= 8 * 31 = 248 targets per pass: both sides within 2 gamma_249 of each other.
  const double gamma = 249.0 * std::ldexp(1.0, -24) / (1 - 249.0 * std::ldexp(1.0, -24));
  CHECK(evals[0].loss == Approx(weighted / double(counted)).epsilon(2 * gamma));
}

TEST_CASE("training lowers the loss on a repetitive corpus and reports every step", "[trainer]") {
  const hattn::data::Dataset data(corpus(), 32);
  hattn::Decoder<small> model(256, 32, 1);
  const hattn::TrainOptions o{.steps = 50, .batch = 8, .micro_batches = 2, .lr = 1e-2, .min_lr = 1e-3,
                              .warmup_steps = 5, .weight_decay = 0.01, .clip = 1.0, .eval_every = 25,
                              .eval_batches = 2, .seed = 7};
  hattn::Trainer trainer(model, data, o);
  std::vector<hattn::StepInfo> steps;
  std::vector<hattn::EvalInfo> evals;
  trainer.on_step = [&](const hattn::StepInfo& s) { steps.push_back(s); };
  trainer.on_eval = [&](const hattn::EvalInfo& e) { evals.push_back(e); };
  const hattn::EvalInfo before = trainer.evaluate();
  const hattn::TrainResult r = trainer.run();

  CHECK(r.status == hattn::TrainStatus::completed);
  CHECK(r.steps == 50);
  CHECK(r.failed_step == -1);
  REQUIRE(steps.size() == 50);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    INFO("step " << i);
    CHECK(steps[i].step == std::int64_t(i));
    CHECK(steps[i].lr == trainer.schedule().lr(std::int64_t(i)));
    CHECK(steps[i].tokens == 8 * 32);
    CHECK(steps[i].targets == 8 * 31);
    CHECK(std::isfinite(steps[i].grad_norm));
    CHECK(steps[i].grad_norm > 0);
    CHECK(std::isfinite(steps[i].loss));
  }
  CHECK(r.loss == steps.back().loss);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += steps[std::size_t(i)].loss / 5;
    last += steps[steps.size() - 1 - std::size_t(i)].loss / 5;
  }
  INFO("mean loss of the first 5 steps " << first << ", of the last 5 " << last);
  CHECK(first > 4.0);      // about log(256) = 5.5 at the start
  CHECK(last < 0.5 * first);
  REQUIRE(evals.size() == 2);
  CHECK(evals[0].step == 25);
  CHECK(evals[1].step == 50);
  CHECK(evals[1].targets == 2 * 8 * 31);
  CHECK(evals[1].loss < 0.5 * before.loss);
  CHECK(trainer.optimizer().steps() == 50);
}

TEST_CASE("a NaN loss stops training before the update and names the step", "[trainer]") {
  const hattn::data::Dataset data(corpus(), 16);
  hattn::Decoder<tiny> model(256, 16, 3);
  hattn::TrainOptions o = small_options();
  o.eval_every = 0;
  hattn::Trainer trainer(model, data, o);
  std::vector<float> after_step_2;
  trainer.on_step = [&](const hattn::StepInfo& s) {
    if (s.step == 2) {
      model.parameter("linear.weight").value[5] = std::numeric_limits<float>::quiet_NaN();
      after_step_2 = values_of(model);
    }
  };
  const hattn::TrainResult r = trainer.run();
  CHECK(r.status == hattn::TrainStatus::non_finite_loss);
  CHECK(r.failed_step == 3);
  CHECK(r.steps == 3);
  CHECK(r.message == "Trainer: loss is nan in step 4 (micro-batch 0); the step was not applied");
  CHECK(trainer.step() == 3);
  CHECK(trainer.optimizer().steps() == 3);
  // The failed step changed no weight (compared bitwise, NaN included).
  const auto now = values_of(model);
  REQUIRE(now.size() == after_step_2.size());
  CHECK(std::memcmp(now.data(), after_step_2.data(), now.size() * sizeof(float)) == 0);
}

TEST_CASE("a saved state resumes bit-exactly, with dropout, micro-batches and evaluations", "[trainer]") {
  const hattn::data::Dataset data(corpus(), 16);
  const hattn::TrainOptions o = small_options();

  hattn::Decoder<small> straight(256, 16, 4);
  hattn::Trainer t_straight(straight, data, o);
  std::vector<double> losses;
  t_straight.on_step = [&](const hattn::StepInfo& s) { losses.push_back(s.loss); };
  CHECK(t_straight.run().steps == 12);

  hattn::Decoder<small> first(256, 16, 4);
  hattn::Trainer t_first(first, data, o);
  CHECK(t_first.run(7).steps == 7);
  const hattn::TrainState<float> state = t_first.state();
  CHECK(state.step == 7);
  CHECK(state.data_position == t_first.data_rng().position());

  // A new model (same construction seed: same dropout key) given the weights of step 7.
  hattn::Decoder<small> resumed(256, 16, 4);
  for (std::size_t k = 0; k < resumed.parameters().size(); ++k)
    std::copy(first.parameters()[k].value, first.parameters()[k].value + first.parameters()[k].size(),
              resumed.parameters()[k].value);
  hattn::Trainer t_resumed(resumed, data, o);
  t_resumed.restore(state);
  std::vector<double> resumed_losses;
  t_resumed.on_step = [&](const hattn::StepInfo& s) { resumed_losses.push_back(s.loss); };
  const hattn::TrainResult r = t_resumed.run();
  CHECK(r.steps == 12);
  REQUIRE(resumed_losses.size() == 5);
  CHECK(std::equal(resumed_losses.begin(), resumed_losses.end(), losses.begin() + 7));
  CHECK(values_of(resumed) == values_of(straight));
  CHECK(t_resumed.state().first_moment == t_straight.state().first_moment);
  CHECK(t_resumed.state().model_step == t_straight.state().model_step);

  // Without the state (fresh moments, rng and dropout step) the run differs: the test can fail.
  hattn::Decoder<small> naive(256, 16, 4);
  for (std::size_t k = 0; k < naive.parameters().size(); ++k)
    std::copy(first.parameters()[k].value, first.parameters()[k].value + first.parameters()[k].size(),
              naive.parameters()[k].value);
  hattn::Trainer t_naive(naive, data, o);
  t_naive.run(5);
  CHECK(values_of(naive) != values_of(straight));
}

TEST_CASE("training is bitwise the same with 1 and 2 threads", "[trainer]") {
  const hattn::data::Dataset data(corpus(), 16);
  auto train = [&] {
    hattn::Decoder<small> model(256, 16, 8);
    hattn::Trainer trainer(model, data, small_options());
    trainer.run(4);
    return values_of(model);
  };
  const auto one = hattn::test::with_threads(1, train);
  const auto two = hattn::test::with_threads(2, train);
  CHECK(one == two);
}

TEST_CASE("evaluation leaves training unchanged", "[trainer]") {
  const hattn::data::Dataset data(corpus(), 16);
  hattn::TrainOptions o = small_options();
  hattn::Decoder<small> a(256, 16, 6), b(256, 16, 6);
  o.eval_every = 0;
  hattn::Trainer ta(a, data, o);
  o.eval_every = 1;
  hattn::Trainer tb(b, data, o);
  int evals = 0;
  tb.on_eval = [&](const hattn::EvalInfo& e) {
    ++evals;
    CHECK(e.step == evals);
  };
  ta.run();
  tb.run();
  CHECK(evals == 12);
  CHECK(values_of(a) == values_of(b));
  CHECK(tb.evaluate().loss == tb.evaluate().loss);  // deterministic validation batches, no dropout
}

namespace {

// A stand-in model with one tensor whose forward returns a finite loss and whose backward writes
// the gradient `grad_value`: it reaches the non-finite gradient path, which a real model cannot
// reach without a non-finite loss first.
struct FakeModel {
  using Scalar = double;
  double value = 1, grad = 0, grad_value = 0;
  std::uint64_t step_ = 0;
  std::vector<hattn::Parameter<double>> params{{"w.weight", {1, 1}, &value, &grad, hattn::Init::zeros, 0}};
  const std::vector<hattn::Parameter<double>>& parameters() const { return params; }
  void zero_grad() { grad = 0; }
  double forward(hattn::View<const std::int32_t, 2>, hattn::View<const std::int32_t, 2>, bool) {
    ++step_;
    return 1.0;
  }
  void backward(double scale = 1) { grad += scale * grad_value; }
  std::uint64_t step() const { return step_; }
  void set_step(std::uint64_t s) { step_ = s; }
  void set_first_sequence(std::uint64_t) {}  // no dropout here: nothing is keyed by it
  Index vocab_size() const { return 256; }
  Index sequence_length() const { return 64; }
};

}  // namespace

TEST_CASE("a non-finite gradient norm stops training before the update", "[trainer]") {
  const hattn::data::Dataset data(corpus(), 16);
  FakeModel model;
  hattn::TrainOptions o{.steps = 5, .batch = 2, .micro_batches = 2, .lr = 0.1};
  hattn::Trainer trainer(model, data, o, [](const hattn::Parameter<double>&) { return false; });
  std::vector<double> norms;
  trainer.on_step = [&](const hattn::StepInfo& s) {
    norms.push_back(s.grad_norm);
    if (s.step == 1) model.grad_value = std::numeric_limits<double>::infinity();
  };
  model.grad_value = 0.25;
  const hattn::TrainResult r = trainer.run();
  CHECK(r.status == hattn::TrainStatus::non_finite_gradient);
  CHECK(r.failed_step == 2);
  CHECK(r.steps == 2);
  CHECK(r.message == "Trainer: gradient norm is inf in step 3; the step was not applied");
  CHECK(norms == std::vector<double>{0.25, 0.25});  // two micro-batches of weight 1/2 each
  // Two Adam steps under a constant gradient move by lr(0) + lr(1) (up to eps); the third none.
  CHECK(model.value == Approx(1 - trainer.schedule().lr(0) - trainer.schedule().lr(1)).epsilon(1e-6));
  CHECK(trainer.optimizer().steps() == 2);
}

TEST_CASE("Trainer rejects options and states it cannot use, with exact messages", "[trainer][errors]") {
  const hattn::data::Dataset data(corpus(), 16), no_val(corpus(), 16, 0.0);
  hattn::Decoder<tiny> model(256, 16);
  using hattn::Trainer;
  hattn::TrainOptions o = small_options();
  o.batch = 6;
  o.micro_batches = 7;
  REQUIRE_THROWS_WITH(Trainer(model, data, o), "Trainer: micro_batches must be in [1, batch 6], got 7");
  o.micro_batches = 0;
  REQUIRE_THROWS_WITH(Trainer(model, data, o), "Trainer: micro_batches must be in [1, batch 6], got 0");
  o.batch = 0;
  REQUIRE_THROWS_WITH(Trainer(model, data, o), "Trainer: batch must be >= 1, got 0");
  o = small_options();
  REQUIRE_THROWS_WITH(Trainer(model, no_val, o), "Trainer: eval_every is 5 but the dataset has no validation split");
  o.steps = -1;
  REQUIRE_THROWS_WITH(Trainer(model, data, o), "Trainer: steps must be >= 0, got -1");
  o = small_options();
  o.warmup_steps = 20;
  REQUIRE_THROWS_WITH(Trainer(model, data, o),
                      "WarmupCosine: need 0 <= warmup_steps <= total_steps, got warmup_steps 20, total_steps 12");
  o = small_options();
  o.min_lr = 1;
  REQUIRE_THROWS_WITH(Trainer(model, data, o), "WarmupCosine: need 0 <= min_lr <= peak_lr, got min_lr 1, peak_lr 0.01");

  hattn::Decoder<tiny> short_model(256, 8);
  REQUIRE_THROWS_WITH(Trainer(short_model, data, small_options()),
                      "Trainer: dataset sequences of 16 tokens exceed the model's sequence_length 8");
  hattn::Decoder<tiny> small_vocab(100, 16);
  REQUIRE_THROWS_WITH(Trainer(small_vocab, data, small_options()),
                      "Trainer: token id 122 in the dataset is outside the model's vocabulary [0, 100)");

  Trainer t(model, data, small_options());
  hattn::TrainState<float> s = t.state();
  s.second_moment.pop_back();
  REQUIRE_THROWS_WITH(t.restore(s), "Trainer::restore: moments of " + std::to_string(s.first_moment.size()) + " and " +
                                        std::to_string(s.second_moment.size()) + " elements, the model has " +
                                        std::to_string(s.first_moment.size()) + " trainable");
}
