#pragma once
// Helpers shared by the hattn_bench sources: random fills, FLOP-rate counters, and the machine's
// measured sgemm peak that model-FLOP utilization (MFU) is reported against.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include <hattn/core/arena.hpp>
#include <hattn/core/blas.hpp>
#include <hattn/core/rng.hpp>
#include <hattn/core/tensor.hpp>

namespace hattn_bench {

using hattn::Index;
using hattn::View;

/// Fills `v` with uniform values in [-1, 1) drawn from `seed`.
template <int R>
void fill_uniform(View<float, R> v, std::uint64_t seed) {
  hattn::Generator gen(seed);
  for (Index i = 0; i < v.size(); ++i) v.data[i] = float(gen.uniform(-1.0, 1.0));
}

/// The "GFLOP" counter: `flops` floating-point operations per iteration, reported as a rate
/// (GFLOP per second of wall-clock time, shown as "GFLOP=<rate>/s").
inline benchmark::Counter gflops(double flops) {
  return benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// Side of the square product the peak is measured on: C (n, n) = A (n, n) B (n, n).
inline constexpr Index peak_gemm_size = 2048;

namespace detail {

/// A peak given on the command line (--hattn_sgemm_peak_gflops), in FLOP/s; 0 when none.
inline double& peak_override() {
  static double value = 0;
  return value;
}

/// Best of ten 2048^3 hattn::gemm calls on all of hattn's threads, in FLOP/s (about a second; the
/// best of several, because other processes on the machine only ever slow a call down). The
/// buffers (48 MiB) are freed before returning.
inline double measure_sgemm_peak() {
  constexpr Index n = peak_gemm_size;
  hattn::Arena<float> arena(3 * hattn::ArenaPlan::round_up<float>(n * n));
  auto a = arena.view(n, n), b = arena.view(n, n), c = arena.view(n, n);  // (n, n) each
  fill_uniform(a, 11);
  fill_uniform(b, 12);
  const auto product = [&] {
    hattn::gemm<float>(hattn::Trans::no, hattn::Trans::no, n, n, n, 1.0f, a.data, n, b.data, n,
                       0.0f, c.data, n);
    benchmark::DoNotOptimize(c.data);
  };
  product();  // warm-up: page faults, OpenBLAS and TBB start-up
  double best = 1e30;
  for (int rep = 0; rep < 10; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    product();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * double(n) * double(n) * double(n) / best;
}

}  // namespace detail

/// Uses `flops_per_second` as the peak instead of measuring it (a driver that measured it once
/// passes it to every run, so that the measurement's buffers do not count in a run's peak RSS).
inline void set_sgemm_peak(double flops_per_second) { detail::peak_override() = flops_per_second; }

/// The machine's sgemm peak in FLOP/s: the --hattn_sgemm_peak_gflops value if given, otherwise
/// measured on first use (best of 10 hattn::gemm calls of 2048^3 on all of hattn's threads) and
/// cached for the life of the process.
inline double sgemm_peak() {
  if (detail::peak_override() > 0) return detail::peak_override();
  static const double measured = detail::measure_sgemm_peak();
  return measured;
}

/// Model-FLOP utilization: the fraction of the sgemm peak that `flops` per iteration achieve over
/// `iterations` iterations taking `seconds` of wall-clock time (1 means peak speed).
inline double mfu(double flops, double iterations, double seconds) {
  return flops * iterations / seconds / sgemm_peak();
}

/// Wall-clock seconds since `start`.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Registers BM_Predict/<preset> and BM_TrainStep/<preset> for tiny, medium and seed;
/// `iterations` > 0 fixes every one's iteration count (0: each preset's default).
void register_model_benchmarks(benchmark::IterationCount iterations);

}  // namespace hattn_bench
