#pragma once
/// \file
/// Text generation (SPEC.md "Generation"): condition on the last sequence_length tokens, pick the
/// next token greedily or by sampling (temperature, top-k, top-p), stop at an end id.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/rng.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn {

/// How generate() picks tokens.
struct SampleOptions {
  Index max_new_tokens = 100;          ///< tokens to add (fewer if every row reaches end_id)
  double temperature = 1.0;            ///< 0: greedy (argmax); otherwise logits / temperature
  Index top_k = 0;                     ///< keep the k most likely tokens (0: all)
  double top_p = 1.0;                  ///< keep the smallest set whose probability reaches p (1: all)
  std::uint64_t seed = 0;              ///< sampling randomness (same seed, same text)
  std::optional<std::int32_t> end_id = std::nullopt;  ///< stop a row when it produces this id
};

/// Picks one token from a row of logits: argmax when temperature is 0, else a sample from
/// softmax(logits / temperature) restricted by top-k, then top-p (the highest-probability tokens
/// whose cumulative probability first reaches top_p; at least one). Ties in the ordering go to the
/// lower id, so the choice is a pure function of (logits, options, u) with `u` uniform in [0, 1).
template <class T>
std::int32_t pick_token(const T* logits, Index vocab, const SampleOptions& opt, double u) {
  if (opt.temperature == 0) return std::int32_t(std::max_element(logits, logits + vocab) - logits);
  std::vector<std::int32_t> order(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
  Index keep = opt.top_k > 0 ? std::min(opt.top_k, vocab) : vocab;
  std::vector<double> p(static_cast<std::size_t>(keep));
  const double top = double(logits[order[0]]) / opt.temperature;
  double sum = 0;
  for (Index i = 0; i < keep; ++i) sum += p[std::size_t(i)] = std::exp(double(logits[order[std::size_t(i)]]) / opt.temperature - top);
  if (opt.top_p < 1.0) {
    double cumulative = 0;
    Index n = 0;
    while (n < keep) {
      cumulative += p[std::size_t(n++)] / sum;
      if (cumulative >= opt.top_p) break;
    }
    keep = n;
    sum = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  }
  double target = u * sum;
  for (Index i = 0; i < keep; ++i) {
    target -= p[std::size_t(i)];
    if (target < 0) return order[std::size_t(i)];
  }
  return order[std::size_t(keep - 1)];  // u * sum rounded up to the total
}

/// Throws hattn::Error `generate: ...` for options generate() cannot use.
inline void check_sample_options(const SampleOptions& opt) {
  detail::require(opt.temperature >= 0 && std::isfinite(opt.temperature), "generate",
                  "temperature must be >= 0, got ", opt.temperature);
  detail::require(opt.top_k >= 0, "generate", "top_k must be >= 0, got ", opt.top_k);
  detail::require(opt.top_p > 0 && opt.top_p <= 1, "generate", "top_p must be in (0, 1], got ", opt.top_p);
  detail::require(opt.max_new_tokens >= 0, "generate", "max_new_tokens must be >= 0, got ", opt.max_new_tokens);
}

/// Continues each prompt row of `prompts` (B, T0), all of one length, by up to
/// opt.max_new_tokens tokens and returns the new tokens of every row (B lists). `on_token(b, id)`
/// is called as each token is chosen (e.g. to stream it to a terminal). The model sees at most its
/// sequence_length most recent tokens. Rows that produced end_id stop receiving tokens; generation
/// stops when all rows have. Throws hattn::Error for invalid options or an empty prompt.
template <class Model>
std::vector<std::vector<std::int32_t>> generate(
    const Model& model, View<const std::int32_t, 2> prompts, const SampleOptions& opt,
    const std::function<void(Index, std::int32_t)>& on_token = {}) {
  detail::require(prompts.dim(0) >= 1 && prompts.dim(1) >= 1, "generate", "the prompt has no tokens: ",
                  prompts.shape());
  check_sample_options(opt);
  const Index B = prompts.dim(0), V = model.vocab_size(), S = model.sequence_length();
  std::vector<std::vector<std::int32_t>> context(static_cast<std::size_t>(B)), added(static_cast<std::size_t>(B));
  for (Index b = 0; b < B; ++b) context[std::size_t(b)].assign(&prompts(b, 0), &prompts(b, 0) + prompts.dim(1));
  std::vector<bool> done(static_cast<std::size_t>(B), false);
  Generator gen(opt.seed, /*stream=*/0x67656e);  // one uniform per row per step
  for (Index step = 0; step < opt.max_new_tokens; ++step) {
    const Index n = std::min<Index>(Index(context[0].size()), S);
    Tensor<std::int32_t, 2> window(B, n);
    for (Index b = 0; b < B; ++b)
      std::copy(context[std::size_t(b)].end() - n, context[std::size_t(b)].end(), &window(b, 0));
    const auto logits = model.next_token_logits(window);  // (B, V)
    bool all_done = true;
    for (Index b = 0; b < B; ++b) {
      const double u = gen.uniform();
      if (done[std::size_t(b)]) {
        context[std::size_t(b)].push_back(*opt.end_id);  // keeps rows aligned; not reported
        continue;
      }
      const std::int32_t id = pick_token(logits.data() + b * V, V, opt, u);
      context[std::size_t(b)].push_back(id);
      added[std::size_t(b)].push_back(id);
      if (on_token) on_token(b, id);
      if (opt.end_id && id == *opt.end_id) done[std::size_t(b)] = true;
      all_done = all_done && done[std::size_t(b)];
    }
    if (all_done) break;
  }
  return added;
}

}  // namespace hattn
