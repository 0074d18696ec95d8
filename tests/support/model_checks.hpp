#pragma once
// Whole-model checks shared by the decoder's and the variants' tests: random inputs, central
// differences in double, checkpointing bitwise equal to the plain step, and causality.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"

namespace hattn::test {

using Ids = hattn::Tensor<std::int32_t, 2>;

Ids random_ids(Index B, Index T, Index V, std::uint64_t seed) {
  hattn::Generator g(seed);
  Ids ids(B, T);
  for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = std::int32_t(g.below(std::uint64_t(V)));
  return ids;
}

// Next-token targets: ids shifted left, last position -100.
Ids next_tokens(const Ids& ids) {
  Ids t(ids.dimension(0), ids.dimension(1));
  for (Index b = 0; b < ids.dimension(0); ++b)
    for (Index i = 0; i < ids.dimension(1); ++i)
      t(b, i) = i + 1 < ids.dimension(1) ? ids(b, i + 1) : -100;
  return t;
}

// Moves LayerNorm parameters away from 1 / 0 so that defaults cannot hide bugs.
template <class Model>
void perturb_norms(Model& m, std::uint64_t seed) {
  hattn::Generator g(seed);
  for (const auto& p : m.parameters())
    if (p.name.find("norm") != std::string::npos)
      for (Index i = 0; i < p.size(); ++i) p.value[i] += typename Model::Scalar(0.2 * g.uniform(-1, 1));
}


template <class Model>
std::vector<typename Model::Scalar> all_grads(const Model& m) {
  std::vector<typename Model::Scalar> g;
  for (const auto& p : m.parameters())
    if (p.trainable()) g.insert(g.end(), p.grad, p.grad + p.size());
  return g;
}

// Central differences against backward(), with dropout off or on (fixed masks: each forward
// reuses step 4) and with or without gradient checkpointing.
template <hattn::Config C, template <hattn::Config, class> class Mix = hattn::model::DefaultMixer>
void check_model_gradients(Index V, Index S, Index B, Index T, bool dropout = false,
                           bool checkpointing = false) {
  hattn::Decoder<C, double, Mix> m(V, S, 7);
  m.set_checkpointing(checkpointing);
  perturb_norms(m, 8);
  const Ids ids = random_ids(B, T, V, 9), targets = next_tokens(ids);
  m.zero_grad();
  m.set_step(4);
  m.forward(ids, targets, dropout);
  m.backward();
  hattn::Generator pick(10);
  double worst = 0;
  for (const auto& p : m.parameters()) {
    if (!p.trainable()) continue;
    for (int k = 0; k < 3; ++k) {
      const Index i = Index(pick.below(std::uint64_t(p.size())));
      const double keep = p.value[i], h = 1e-5;
      p.value[i] = keep + h;
      m.set_step(4);
      const double lp = m.forward(ids, targets, dropout);
      p.value[i] = keep - h;
      m.set_step(4);
      const double lm = m.forward(ids, targets, dropout);
      p.value[i] = keep;
      const double numeric = (lp - lm) / (2 * h), analytic = p.grad[i];
      const double err = std::abs(numeric - analytic) / std::max({std::abs(numeric), std::abs(analytic), 1e-3});
      worst = std::max(worst, err);
      INFO(p.name << "[" << i << "]: analytic " << analytic << ", central difference " << numeric);
      REQUIRE(err <= 1e-6);
    }
  }
  INFO("worst relative error " << worst);
  REQUIRE(worst < 1e-6);
}


// Loss, logits and every gradient of two accumulated steps (dropout on, a padded length), with
// gradient checkpointing on or off.
template <hattn::Config C, class T, template <hattn::Config, class> class Mix = hattn::model::DefaultMixer>
std::vector<T> checkpoint_run(bool checkpointing, Index V, Index B, Index len) {
  hattn::Decoder<C, T, Mix> m(V, 64, 31);
  perturb_norms(m, 32);
  m.set_checkpointing(checkpointing);
  const Ids ids = random_ids(B, len, V, 33), targets = next_tokens(ids);
  const Ids other = random_ids(B, len, V, 34);
  std::vector<T> out;
  m.zero_grad();
  m.set_step(6);
  out.push_back(m.forward(ids, targets, true));
  const auto logits = m.last_logits();
  out.insert(out.end(), logits.data(), logits.data() + logits.size());
  m.backward(T(0.5));
  out.push_back(m.forward(other, next_tokens(other), true));  // accumulates into the same grads
  m.backward(T(0.5));
  const auto g = all_grads(m);
  out.insert(out.end(), g.begin(), g.end());
  return out;
}

template <hattn::Config C, class T, template <hattn::Config, class> class Mix = hattn::model::DefaultMixer>
void check_checkpointing(Index V, Index B, Index len) {
  const auto plain = checkpoint_run<C, T, Mix>(false, V, B, len);
  const auto checkpointed = checkpoint_run<C, T, Mix>(true, V, B, len);
  INFO("levels " << C.levels << ", blocks " << C.blocks << ", T = " << len);
  REQUIRE(plain.size() == checkpointed.size());
  Index differ = 0;
  for (std::size_t i = 0; i < plain.size(); ++i) differ += plain[i] != checkpointed[i];
  REQUIRE(differ == 0);
}


// Every position < t of a and b is bitwise equal.
bool prefix_equal(const hattn::Tensor<float, 3>& a, const hattn::Tensor<float, 3>& b, Index t) {
  const Index V = a.dimension(2);
  for (Index i = 0; i < a.dimension(0); ++i)
    for (Index j = 0; j < t; ++j)
      for (Index v = 0; v < V; ++v)
        if (a(i, j, v) != b(i, j, v)) return false;
  return true;
}

template <hattn::Config C, template <hattn::Config, class> class Mix = hattn::model::DefaultMixer>
void check_causality(Index V, Index S, Index T) {
  hattn::Decoder<C, float, Mix> m(V, S, 21);
  perturb_norms(m, 22);
  const Ids ids = random_ids(2, T, V, 23);
  const auto base = m.predict(ids);
  for (Index t : {Index(1), T / 3, T / 2 + 1, T - 1}) {
    Ids changed = ids;
    for (Index b = 0; b < 2; ++b)
      for (Index j = t; j < T; ++j) changed(b, j) = std::int32_t((ids(b, j) + 1 + j) % V);
    const auto out = m.predict(changed);
    INFO("T = " << T << ", changed from position " << t);
    REQUIRE(prefix_equal(base, out, t));
    REQUIRE_FALSE(prefix_equal(base, out, T));  // the change is visible from t on

    // Training mode with dropout: the logits' prefix is unchanged too (masks depend on positions only).
    m.set_step(5);
    m.forward(ids, next_tokens(ids), true);
    const auto l0 = m.last_logits();
    std::vector<float> before(l0.data(), l0.data() + l0.size());
    m.set_step(5);
    m.forward(changed, next_tokens(changed), true);
    const auto l1 = m.last_logits();
    for (Index b = 0; b < 2; ++b)
      for (Index j = 0; j < t; ++j)
        for (Index v = 0; v < V; ++v) REQUIRE(l1(b, j, v) == before[std::size_t((b * T + j) * V + v)]);
  }
}


// Dropout masks are keyed by each sequence's index in the step's batch (Decoder::set_first_sequence):
// a training forward pass over sequences 2 and 3 of a batch alone, told they are sequences 2 and 3,
// gives them bitwise the logits of the pass over all four at the same step; told they are 0 and 1,
// it does not (other masks). This is what lets micro-batches and ranks split a batch freely.
template <hattn::Config C, template <hattn::Config, class> class Mix = hattn::model::DefaultMixer>
void check_dropout_split(Index V, Index S, Index T) {
  INFO("levels " << C.levels << " heads " << C.heads << " d " << C.d_model << " blocks " << C.blocks << " T " << T);
  hattn::Decoder<C, float, Mix> m(V, S, 41);
  perturb_norms(m, 42);
  const Ids ids = random_ids(4, T, V, 43), targets = next_tokens(ids);
  Ids half(2, T), half_targets(2, T);  // sequences 2 and 3
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < T; ++t) {
      half(b, t) = ids(b + 2, t);
      half_targets(b, t) = targets(b + 2, t);
    }
  const auto logits_at = [&](const Ids& x, const Ids& y, std::uint64_t first) {
    m.set_step(5);
    m.set_first_sequence(first);
    m.forward(x, y, true);
    return m.last_logits();  // (B, T, V)
  };
  const auto all = logits_at(ids, targets, 0);
  const auto split = logits_at(half, half_targets, 2);
  const auto moved = logits_at(half, half_targets, 0);
  const std::size_t bytes = std::size_t(2 * T * V) * sizeof(float);
  CHECK(std::memcmp(split.data(), all.data() + 2 * T * V, bytes) == 0);
  CHECK(std::memcmp(moved.data(), all.data() + 2 * T * V, bytes) != 0);
}

// Everything one training step and one inference pass produce, flat: every gradient, the loss
// (dropout on, step 3) and the probabilities; for the 1 vs 2 threads comparisons.
template <class Model>
std::vector<float> step_and_predict(Model& m, const Ids& ids, const Ids& targets) {
  m.zero_grad();
  m.set_step(3);
  const float loss = m.forward(ids, targets, true);
  m.backward();
  auto g = all_grads(m);
  g.push_back(loss);
  const auto p = m.predict(ids);
  g.insert(g.end(), p.data(), p.data() + p.size());
  return g;
}

}  // namespace hattn::test
