// Whole-model benchmarks for three presets: BM_Predict/<preset> (inference: probabilities for a
// batch, a fresh result each call), BM_PredictInto/<preset> (the same into one reused buffer), BM_TrainStep/<preset> (zero_grad, training forward with dropout, backward, AdamW
// step) and BM_TrainStepCheckpointed/<preset> (the same with gradient checkpointing). Counters: tokens/s (items_per_second), model GFLOP per step, GFLOP/s and MFU against the
// measured sgemm peak (bench_common.hpp); training also reports its workspace (Decoder::workspace_bytes).
//
// Model FLOPs are counted analytically, 2 m n k per matrix product of the model's definition (not
// of how hattn happens to compute it). For B sequences of T tokens, Tp = T rounded up to a multiple
// of 2^L (equal to T in every preset here), Mp = B Tp rows inside the hierarchies, M = B T rows
// elsewhere, C = Tp / 2^L rows per leaf chunk, S_l = C 2^l rows per sibling at tree level l:
//
//   one hierarchical attention:
//     GEMMs      leaf Q|K|V 6 Mp d^2 + leaf W_o 2 Mp d^2
//                + per level: Q 1 Mp d^2 + K|V 2 Mp d^2 + W_o 1 Mp d^2   (Mp / 2 rows per side)
//     attention  4 d per visible score (Q K^T and P V: 2 dh each, per head, summed over heads):
//                leaf     B 2^L chunks x C (C + 1) / 2 causal scores
//                level l  B 2^(L-1-l) pairs x S_l (S_l + 1) / 2 (aligned mask) or S_l^2 (full)
//   one block:   2 hierarchical attentions + feed-forward 2 x 2 M d (4d) = 16 M d^2
//   head:        2 M d V
//   forward  F = blocks x block + head
//   training step = 3 F  (the backward pass is 2 F: each product's input and weight gradients)
//
// Not counted: embedding, LayerNorm, softmax, ReLU, dropout, residuals, the loss, AdamW (O(M d)
// or O(parameters) each), and work an implementation does beyond the model: hattn computes the
// masked half of each diagonal attention tile and recomputes the scores in the backward pass.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string>

#include <hattn/hattn.hpp>

#include "bench_common.hpp"
#include "bench_presets.hpp"

namespace hattn_bench {

namespace {

/// A benchmarked model: compile-time shape and the run's vocabulary, length and batch.
struct Preset {
  const char* name;
  hattn::Config config;
  Index vocab, tokens, batch;
  benchmark::IterationCount default_iterations;  ///< 0: Google Benchmark decides
};

constexpr Preset tiny{"tiny", tiny_width, 256, 256, 8, 0};
constexpr Preset medium{"medium", medium_width, 8192, 512, 8, 0};
// Seconds per iteration: a fixed, small iteration count keeps a full run of hattn_bench bounded.
constexpr Preset seed{"seed", seed_width, 50257, 512, 8, 2};

/// Model FLOPs of one forward pass (the formula at the top of this file).
double forward_flops(const Preset& p) {
  const hattn::Config& c = p.config;
  const double d = c.d_model, L = c.levels, B = double(p.batch), V = double(p.vocab);
  const Index chunks = Index{1} << c.levels;
  const Index tp = (p.tokens + chunks - 1) / chunks * chunks;
  const double Mp = B * double(tp), M = B * double(p.tokens);
  const auto causal = [](double n) { return n * (n + 1) / 2; };
  const double C = double(tp / chunks);
  double scores = B * double(chunks) * causal(C);  // leaf
  for (int l = 0; l < c.levels; ++l) {
    const double S = C * double(Index{1} << l), pairs = B * double(Index{1} << (c.levels - 1 - l));
    scores += pairs * (c.node_mask == hattn::NodeMask::aligned ? causal(S) : S * S);
  }
  const double hierarchy = 8 * Mp * d * d + L * 4 * Mp * d * d + 4 * d * scores;
  const double block = 2 * hierarchy + 16 * M * d * d;
  return double(c.blocks) * block + 2 * M * d * V;
}

// `seconds`: wall-clock time of the timed loop (all state.iterations() steps).
void set_counters(benchmark::State& state, const Preset& p, double flops, double seconds) {
  state.SetItemsProcessed(state.iterations() * p.batch * p.tokens);  // tokens
  state.counters["model_GFLOP_per_step"] = flops * 1e-9;
  state.counters["GFLOP"] = gflops(flops);
  state.counters["MFU"] = mfu(flops, double(state.iterations()), seconds);
  state.counters["peak_GFLOPs"] = sgemm_peak() * 1e-9;
  state.counters["threads"] = hattn::max_threads();
}

// `into`: predict into one reused (B, T, V) buffer instead of a fresh result per call.
template <hattn::Config C>
void BM_Predict(benchmark::State& state, const Preset& p, bool into) {
  (void)sgemm_peak();  // measured (once) before the model's memory exists
  hattn::Decoder<C> model(p.vocab, p.tokens, /*seed=*/1);
  const Batch batch(p.batch, p.tokens, p.vocab);
  auto out = model.predict(batch.ids);  // (B, T, V); warm-up: first touch of the scratch pages
  benchmark::DoNotOptimize(out.data());
  if (!into) out = hattn::Tensor<float, 3>();  // only the fresh results' memory from here on
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (into) {
      model.predict(batch.ids, hattn::View<float, 3>(out));
      benchmark::DoNotOptimize(out.data());
    } else {
      const auto probs = model.predict(batch.ids);  // (B, T, V)
      benchmark::DoNotOptimize(probs.data());
    }
  }
  set_counters(state, p, forward_flops(p), seconds_since(start));
}

template <hattn::Config C>
void BM_TrainStep(benchmark::State& state, const Preset& p, bool checkpointing) {
  (void)sgemm_peak();
  hattn::Decoder<C> model(p.vocab, p.tokens, /*seed=*/1);
  model.set_checkpointing(checkpointing);
  hattn::AdamW<float> optimizer(model.parameters(), hattn::AdamWOptions{.lr = 3e-4});
  const Batch batch(p.batch, p.tokens, p.vocab);
  const auto step = [&] {
    model.zero_grad();
    const float loss = model.forward(batch.ids, batch.targets);
    model.backward();
    optimizer.step();
    return loss;
  };
  benchmark::DoNotOptimize(step());  // warm-up: sizes the workspace, first touch of every page
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(step());
  set_counters(state, p, 3 * forward_flops(p), seconds_since(start));
  const auto workspace = model.workspace_bytes();
  state.counters["workspace_values_MiB"] = double(workspace.values) / double(1 << 20);
  state.counters["workspace_grads_MiB"] = double(workspace.gradients) / double(1 << 20);
}

template <hattn::Config C>
void register_preset(const Preset& p, benchmark::IterationCount iterations) {
  const benchmark::IterationCount n = iterations > 0 ? iterations : p.default_iterations;
  for (auto* b : {benchmark::RegisterBenchmark((std::string("BM_Predict/") + p.name).c_str(),
                                               [p](benchmark::State& s) { BM_Predict<C>(s, p, false); }),
                  benchmark::RegisterBenchmark((std::string("BM_PredictInto/") + p.name).c_str(),
                                               [p](benchmark::State& s) { BM_Predict<C>(s, p, true); }),
                  benchmark::RegisterBenchmark((std::string("BM_TrainStep/") + p.name).c_str(),
                                               [p](benchmark::State& s) { BM_TrainStep<C>(s, p, false); }),
                  benchmark::RegisterBenchmark((std::string("BM_TrainStepCheckpointed/") + p.name).c_str(),
                                               [p](benchmark::State& s) { BM_TrainStep<C>(s, p, true); })}) {
    b->Unit(benchmark::kMillisecond)->UseRealTime();
    if (n > 0) b->Iterations(n);
  }
}

}  // namespace

void register_model_benchmarks(benchmark::IterationCount iterations) {
  register_preset<tiny.config>(tiny, iterations);
  register_preset<medium.config>(medium, iterations);
  register_preset<seed.config>(seed, iterations);
}

}  // namespace hattn_bench
