// Core benchmarks: the GEMM every op goes through (the machine's reference peak), and the linear
// layer at a model-like shape. Times are wall-clock: the work runs on all of hattn's threads.

#include <benchmark/benchmark.h>

#include <hattn/core/arena.hpp>
#include <hattn/core/blas.hpp>
#include <hattn/core/parallel.hpp>
#include <hattn/core/tensor.hpp>
#include <hattn/ops/linear.hpp>

#include "bench_common.hpp"

namespace {

using hattn::Index;
using hattn::View;
using hattn_bench::fill_uniform;
using hattn_bench::gflops;

// C (n, n) = A (n, n) B (n, n): one hattn::gemm call per iteration.
void BM_Sgemm(benchmark::State& state) {
  const Index n = state.range(0);
  hattn::Arena<float> arena(3 * hattn::ArenaPlan::round_up<float>(n * n));
  auto a = arena.view(n, n), b = arena.view(n, n), c = arena.view(n, n);
  fill_uniform(a, 1);
  fill_uniform(b, 2);
  for (auto _ : state) {
    hattn::gemm<float>(hattn::Trans::no, hattn::Trans::no, n, n, n, 1.0f, a.data, n, b.data, n,
                       0.0f, c.data, n);
    benchmark::DoNotOptimize(c.data);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP"] = gflops(2.0 * double(n) * double(n) * double(n));
}
BENCHMARK(BM_Sgemm)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// The peak every MFU counter divides by (hattn_bench::sgemm_peak: best of four 2048^3 products,
// measured once per process, or the --hattn_sgemm_peak_gflops value), as a counter.
void BM_SgemmPeak(benchmark::State& state) {
  const double peak = hattn_bench::sgemm_peak();
  for (auto _ : state) benchmark::DoNotOptimize(peak);
  state.counters["peak_GFLOPs"] = peak * 1e-9;
  state.counters["threads"] = hattn::max_threads();
}
BENCHMARK(BM_SgemmPeak)->Iterations(1);

// The model-like shape: batch 8 x 256 tokens, d_model 256, projected to 3 * d_model (fused Q|K|V).
constexpr Index linear_m = 8 * 256, linear_k = 256, linear_n = 768;

struct LinearBuffers {
  hattn::Arena<float> arena;
  View<float, 2> x, w, y, dx, dw, dy;  // (M, K), (N, K), (M, N), (M, K), (N, K), (M, N)
  View<float, 1> b, db;                // (N), (N)

  LinearBuffers() {
    constexpr Index m = linear_m, k = linear_k, n = linear_n;
    hattn::ArenaPlan plan;
    for (Index size : {m * k, n * k, m * n, m * k, n * k, m * n, n, n}) plan.add<float>(size);
    arena.reserve(plan.total());
    x = arena.view(m, k);
    w = arena.view(n, k);
    y = arena.view(m, n);
    dx = arena.view(m, k);
    dw = arena.view(n, k);
    dy = arena.view(m, n);
    b = arena.view(n);
    db = arena.view(n);
    fill_uniform(x, 1);
    fill_uniform(w, 2);
    fill_uniform(b, 3);
    fill_uniform(dy, 4);
  }
};

void BM_LinearForward(benchmark::State& state) {
  LinearBuffers buf;
  for (auto _ : state) {
    hattn::ops::linear_forward<float>(buf.y, buf.x, buf.w, buf.b);
    benchmark::DoNotOptimize(buf.y.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * linear_m);  // rows (tokens)
  state.counters["GFLOP"] = gflops(2.0 * linear_m * linear_k * linear_n);
}
BENCHMARK(BM_LinearForward)->Unit(benchmark::kMillisecond)->UseRealTime();

// dx, dW and db: two GEMMs of the forward's size plus the bias column sums. The gradients keep
// accumulating across iterations, as they would across micro-batches.
void BM_LinearBackward(benchmark::State& state) {
  LinearBuffers buf;
  for (auto _ : state) {
    hattn::ops::linear_backward<float>(buf.dy, buf.x, buf.w, buf.dx, buf.dw, buf.db);
    benchmark::DoNotOptimize(buf.dw.data);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * linear_m);  // rows (tokens)
  state.counters["GFLOP"] = gflops(4.0 * linear_m * linear_k * linear_n);
}
BENCHMARK(BM_LinearBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
