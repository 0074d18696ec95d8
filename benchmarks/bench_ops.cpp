// Per-op benchmarks at the shapes the model runs them: attention as the leaves run it (many small
// causal chunks) and as the top tree level runs it (one (T/2, T/2) block per sequence), LayerNorm,
// dropout, cross-entropy over the GPT-2 vocabulary, and the seed model's head with its loss.
// Forward and backward separately unless said otherwise; wall-clock times.
//
// GFLOP counters of attention count model FLOPs: 4 d per visible (unmasked) score in the forward
// pass (Q K^T and P V, 2 dh multiply-adds each per head, summed over the heads), twice that in the
// backward pass. The backward also recomputes the scores from the saved log-sum-exp and computes
// the masked half of each diagonal 64-row tile; that work is not counted.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <hattn/core/arena.hpp>
#include <hattn/core/rng.hpp>
#include <hattn/core/tensor.hpp>
#include <hattn/ops/attention.hpp>
#include <hattn/ops/cross_entropy.hpp>
#include <hattn/ops/dropout.hpp>
#include <hattn/ops/layernorm.hpp>
#include <hattn/ops/linear.hpp>
#include <hattn/ops/linear_cross_entropy.hpp>

#include "bench_common.hpp"

namespace {

using hattn::Index;
using hattn::Rows;
using hattn::View;
using hattn_bench::fill_uniform;
using hattn_bench::gflops;

// Rows through the model per step at T = 512, batch 8 (the medium and seed presets).
constexpr Index model_rows = 8 * 512;

// ---------------------------------------------------------------------------------------------
// Attention

// Queries and keys | values of one attention call, laid out as the model lays them out: the leaf
// reads Q, K, V as column slices of one fused (M, 3d) buffer; a tree level reads Q from (M, d)
// and K, V as column slices of (M, 2d). Here both cases use one fused (M, 3d) buffer: Q columns
// [0, d), K [d, 2d), V [2d, 3d), row stride 3d, so the memory access pattern is the model's.
struct AttentionBuffers {
  Index groups, rows, d, heads;
  hattn::Arena<float> arena;
  View<float, 2> qkv, dqkv;  // (G * rows, 3d)
  View<float, 2> o, dout;    // (G * rows, d)
  View<float, 3> lse;        // (G, heads, rows)

  AttentionBuffers(Index groups_, Index rows_, Index d_, Index heads_)
      : groups(groups_), rows(rows_), d(d_), heads(heads_) {
    const Index m = groups * rows;
    hattn::ArenaPlan plan;
    for (Index size : {m * 3 * d, m * 3 * d, m * d, m * d, groups * heads * rows}) plan.add<float>(size);
    arena.reserve(plan.total());
    qkv = arena.view(m, 3 * d);
    dqkv = arena.view(m, 3 * d);
    o = arena.view(m, d);
    dout = arena.view(m, d);
    lse = arena.view(groups, heads, rows);
    fill_uniform(qkv, 1);
    fill_uniform(dout, 2);
  }

  // Column slice `part` (0 Q, 1 K, 2 V) of a fused buffer, as G blocks of `rows` rows.
  Rows<float> slice(View<float, 2> fused, Index part) const {
    return Rows<float>{fused.data + part * d, groups, rows, d, 3 * d, rows * 3 * d};
  }

  // Visible scores per group under the causal mask: rows (rows + 1) / 2.
  double flops_forward() const { return 4.0 * double(d) * double(groups) * double(rows) * double(rows + 1) / 2; }

  // `o` or `dout` as G blocks of `rows` rows.
  Rows<float> blocks(View<float, 2> m) const { return Rows<float>{m.data, groups, rows, d, d, rows * d}; }

  void forward() {
    hattn::ops::attention_forward<float>(blocks(o), slice(qkv, 0), slice(qkv, 1), slice(qkv, 2), lse, heads,
                                         hattn::ops::Mask::causal);
  }
  void backward() {
    hattn::ops::attention_backward<float>(blocks(dout), slice(qkv, 0), slice(qkv, 1), slice(qkv, 2),
                                          blocks(o), lse,
                                          heads, hattn::ops::Mask::causal, slice(dqkv, 0),
                                          slice(dqkv, 1), slice(dqkv, 2));
  }
};

// Arguments: d, heads, rows per block; the blocks cover `rows_total` rows.
void attention_forward_bench(benchmark::State& state, Index rows_total) {
  const Index d = state.range(0), heads = state.range(1), rows = state.range(2);
  AttentionBuffers buf(rows_total / rows, rows, d, heads);
  for (auto _ : state) {
    buf.forward();
    benchmark::DoNotOptimize(buf.o.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * rows_total);  // query rows (tokens)
  state.counters["GFLOP"] = gflops(buf.flops_forward());
}

// The gradients keep accumulating across iterations, as they would across micro-batches.
void attention_backward_bench(benchmark::State& state, Index rows_total) {
  const Index d = state.range(0), heads = state.range(1), rows = state.range(2);
  AttentionBuffers buf(rows_total / rows, rows, d, heads);
  buf.forward();
  for (auto _ : state) {
    buf.backward();
    benchmark::DoNotOptimize(buf.dqkv.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * rows_total);
  state.counters["GFLOP"] = gflops(2.0 * buf.flops_forward());
}

// Leaf attention of one hierarchy over batch 8 x T 512: 8 * 2^L causal chunks of C = 512 / 2^L
// rows. Seed preset (d 768, 12 heads, L 5): C = 16; medium (d 256, 8 heads, L 3): C = 64; tiny's
// chunks and heads (d 64, 4 heads of 16, C = 32: its T 256 over L 3), here over the same 4096 rows.
void BM_AttentionLeafForward(benchmark::State& state) { attention_forward_bench(state, model_rows); }
void BM_AttentionLeafBackward(benchmark::State& state) { attention_backward_bench(state, model_rows); }

// Top tree level over batch 8 x T 512: the right halves (8 x 256 query rows) attend to the left
// halves (8 x 256 key rows), aligned (causal) node mask: one (T/2, T/2) block per sequence.
void BM_AttentionTopForward(benchmark::State& state) { attention_forward_bench(state, model_rows / 2); }
void BM_AttentionTopBackward(benchmark::State& state) { attention_backward_bench(state, model_rows / 2); }

void leaf_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"d", "heads", "C"})->Args({768, 12, 16})->Args({256, 8, 64})->Args({64, 4, 32});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void top_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"d", "heads", "S"})->Args({768, 12, 256})->Args({256, 8, 256});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_AttentionLeafForward)->Apply(leaf_shapes);
BENCHMARK(BM_AttentionLeafBackward)->Apply(leaf_shapes);
BENCHMARK(BM_AttentionTopForward)->Apply(top_shapes);
BENCHMARK(BM_AttentionTopBackward)->Apply(top_shapes);

// ---------------------------------------------------------------------------------------------
// LayerNorm over the model's rows at the seed width (4096 rows x 768). Memory-bound: the byte
// counters give the minimum traffic (forward reads x, writes y; backward reads dy, x, adds into dx).

struct LayerNormBuffers {
  static constexpr Index m = model_rows, d = 768;
  hattn::Arena<float> arena;
  View<float, 2> x, y, dy, dx;          // (M, d) each
  View<float, 1> w, b, dw, db;          // (d) each
  View<float, 1> mean, rstd;            // (M) each

  LayerNormBuffers() {
    hattn::ArenaPlan plan;
    for (Index size : {m * d, m * d, m * d, m * d, d, d, d, d, m, m}) plan.add<float>(size);
    arena.reserve(plan.total());
    x = arena.view(m, d);
    y = arena.view(m, d);
    dy = arena.view(m, d);
    dx = arena.view(m, d);
    w = arena.view(d);
    b = arena.view(d);
    dw = arena.view(d);
    db = arena.view(d);
    mean = arena.view(m);
    rstd = arena.view(m);
    fill_uniform(x, 1);
    fill_uniform(w, 2);
    fill_uniform(b, 3);
    fill_uniform(dy, 4);
  }
};

void BM_LayerNormForward(benchmark::State& state) {
  LayerNormBuffers buf;
  for (auto _ : state) {
    hattn::ops::layernorm_forward<float>(buf.y, buf.mean, buf.rstd, buf.x, buf.w, buf.b);
    benchmark::DoNotOptimize(buf.y.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * buf.m);  // rows
  state.SetBytesProcessed(state.iterations() * 2 * buf.m * buf.d * Index(sizeof(float)));
}
BENCHMARK(BM_LayerNormForward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LayerNormBackward(benchmark::State& state) {
  LayerNormBuffers buf;
  hattn::ops::layernorm_forward<float>(buf.y, buf.mean, buf.rstd, buf.x, buf.w, buf.b);
  for (auto _ : state) {
    hattn::ops::layernorm_backward<float>(buf.dy, buf.x, buf.w, buf.mean, buf.rstd, buf.dx, buf.dw, buf.db);
    benchmark::DoNotOptimize(buf.dx.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * buf.m);
  state.SetBytesProcessed(state.iterations() * 4 * buf.m * buf.d * Index(sizeof(float)));
}
BENCHMARK(BM_LayerNormBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---------------------------------------------------------------------------------------------
// Dropout (p = 0.1, training) over the model's rows at the seed width (4096 x 768): the Philox
// masks are generated in the forward pass and again in the backward pass.

void BM_Dropout(benchmark::State& state) {
  const bool backward = state.range(0) != 0;
  constexpr Index n = model_rows * 768;
  hattn::Arena<float> arena;
  arena.reserve(2 * n);
  const View<float, 1> x = arena.view(n), y = arena.view(n);  // (n) each: input / dy, output / dx
  fill_uniform(x, 5);
  fill_uniform(y, 6);
  for (auto _ : state) {
    if (backward)
      hattn::ops::dropout_backward<float>(x, y, 0.1, true, /*seed=*/1, /*stream=*/2);
    else
      hattn::ops::dropout_forward<float>(y, x, 0.1, true, /*seed=*/1, /*stream=*/2);
    benchmark::DoNotOptimize(y.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);  // elements
}
BENCHMARK(BM_Dropout)->ArgName("backward")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---------------------------------------------------------------------------------------------
// Cross-entropy over the GPT-2 vocabulary (V = 50257) for `rows` logit rows (argument; the seed
// preset's step has 4096). One target in 64 is ignored (-100), as the last position of each
// sequence is. Bound by exp() and memory: the forward reads the logits, the backward reads them
// again and adds into dlogits.

constexpr Index gpt2_vocab = 50257;

struct CrossEntropyBuffers {
  Index m, v = gpt2_vocab;
  hattn::Arena<float> arena;
  View<float, 2> logits, dlogits;  // (M, V) each
  View<float, 1> lse;              // (M)
  std::vector<std::int32_t> targets;  // (M)

  explicit CrossEntropyBuffers(Index rows) : m(rows) {
    hattn::ArenaPlan plan;
    for (Index size : {m * v, m * v, m}) plan.add<float>(size);
    arena.reserve(plan.total());
    logits = arena.view(m, v);
    dlogits = arena.view(m, v);
    lse = arena.view(m);
    fill_uniform(logits, 1);
    hattn::Generator gen(2);
    targets.resize(std::size_t(m));
    for (Index i = 0; i < m; ++i)
      targets[std::size_t(i)] = i % 64 == 63 ? hattn::ops::ignore_index : std::int32_t(gen.below(std::uint64_t(v)));
  }
  View<const std::int32_t, 1> target_view() const { return View<const std::int32_t, 1>(targets.data(), m); }
};

void BM_CrossEntropyForward(benchmark::State& state) {
  CrossEntropyBuffers buf(state.range(0));
  for (auto _ : state) {
    const float loss = hattn::ops::cross_entropy_forward<float>(buf.logits, buf.target_view(), buf.lse);
    benchmark::DoNotOptimize(loss);
  }
  state.SetItemsProcessed(state.iterations() * buf.m);  // rows
  state.SetBytesProcessed(state.iterations() * buf.m * buf.v * Index(sizeof(float)));
}
BENCHMARK(BM_CrossEntropyForward)->ArgName("rows")->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CrossEntropyBackward(benchmark::State& state) {
  CrossEntropyBuffers buf(state.range(0));
  hattn::ops::cross_entropy_forward<float>(buf.logits, buf.target_view(), buf.lse);
  for (auto _ : state) {
    hattn::ops::cross_entropy_backward<float>(1.0f, buf.logits, buf.target_view(), buf.lse, buf.dlogits);
    benchmark::DoNotOptimize(buf.dlogits.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * buf.m);
  state.SetBytesProcessed(state.iterations() * 3 * buf.m * buf.v * Index(sizeof(float)));
}
BENCHMARK(BM_CrossEntropyBackward)->ArgName("rows")->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---------------------------------------------------------------------------------------------
// The seed model's head (768 -> V = 50257). BM_HeadForward: one sequence's logits as inference
// computes them (512 rows). BM_HeadLoss: head and mean cross-entropy, forward and backward, over
// 1024 rows, three ways: mode 0 unfused (linear_forward, cross_entropy_forward, the in-place
// cross-entropy backward, linear_backward), mode 1 fused with the logits stored, mode 2 fused with
// the logits recomputed per chunk (gradient checkpointing).

struct HeadBuffers {
  static constexpr Index k = 768, n = 50257;
  const Index m;
  hattn::Arena<float> arena;
  View<float, 2> x, w, dx, dw, logits;  // (M, K), (N, K), (M, K), (N, K), (M, N)
  View<float, 1> b, db, lse;            // (N), (N), (M)
  std::vector<std::int32_t> targets;    // (M)

  explicit HeadBuffers(Index rows) : m(rows), targets(std::size_t(rows)) {
    hattn::ArenaPlan plan;
    for (Index size : {m * k, n * k, m * k, n * k, m * n, n, n, m}) plan.add<float>(size);
    arena.reserve(plan.total());
    x = arena.view(m, k);
    w = arena.view(n, k);
    dx = arena.view(m, k);
    dw = arena.view(n, k);
    logits = arena.view(m, n);
    b = arena.view(n);
    db = arena.view(n);
    lse = arena.view(m);
    fill_uniform(x, 7);
    fill_uniform(w, 8);
    fill_uniform(b, 9);
    hattn::Generator gen(10);
    for (auto& t : targets) t = std::int32_t(gen.below(std::uint64_t(n)));
  }
  View<const std::int32_t, 1> target_view() const { return View<const std::int32_t, 1>(targets.data(), m); }
};

void BM_HeadForward(benchmark::State& state) {
  HeadBuffers buf(512);
  for (auto _ : state) {
    hattn::ops::linear_forward<float>(buf.logits, buf.x, buf.w, buf.b);
    benchmark::DoNotOptimize(buf.logits.data);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP"] = gflops(2.0 * double(buf.m * buf.k * buf.n));
}
BENCHMARK(BM_HeadForward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_HeadLoss(benchmark::State& state) {
  const int mode = int(state.range(0));
  HeadBuffers buf(1024);
  const Index chunk = hattn::ops::linear_cross_entropy_chunk(buf.n);
  const View<float, 2> logits = mode == 2 ? View<float, 2>(buf.logits.data, std::min(buf.m, chunk), buf.n)
                                          : buf.logits;  // (M, N) stored or (chunk, N) scratch
  for (auto _ : state) {
    if (mode == 0) {
      hattn::ops::linear_forward<float>(buf.logits, buf.x, buf.w, buf.b);
      hattn::ops::cross_entropy_forward<float>(buf.logits, buf.target_view(), buf.lse);
      hattn::ops::cross_entropy_backward_in_place<float>(1.0f, buf.logits, buf.target_view(), buf.lse);
      hattn::ops::linear_backward<float>(buf.logits, buf.x, buf.w, buf.dx, buf.dw, buf.db);
    } else {
      hattn::ops::linear_cross_entropy_forward<float>(buf.x, buf.w, buf.b, buf.target_view(), buf.lse, logits,
                                                      chunk);
      hattn::ops::linear_cross_entropy_backward<float>(1.0f, buf.x, buf.w, buf.b, buf.target_view(), buf.lse,
                                                       logits, chunk, buf.dx, buf.dw, buf.db);
    }
    benchmark::DoNotOptimize(buf.dw.data);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP"] = gflops((mode == 2 ? 8.0 : 6.0) * double(buf.m * buf.k * buf.n));
}
BENCHMARK(BM_HeadLoss)->ArgName("mode")->DenseRange(0, 2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
