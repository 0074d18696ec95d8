// The machine's best f32 GEMM rate from any packaged library, called directly with its own
// threading: OpenBLAS's cblas_sgemm (its threads) and oneDNN's dnnl_sgemm (its OpenMP threads),
// square row-major products of 1024, 2048 and 4096, on 1 and on every core. BM_SgemmPeak
// (hattn::gemm through its tiles) is measured against the best of these.
//   hattn_gemm_peak [seconds per point, default 1]
// Prints one line per (library, size, threads), the best rate per thread count, and hattn::gemm
// (on all of hattn's threads) over the same std::vector operands and over a hattn::Arena.
#include <hattn/core/arena.hpp>
#include <hattn/core/blas.hpp>
#include <hattn/core/gemm/openblas.hpp>
#if HATTN_GEMM_PEAK_ONEDNN
#include <hattn/core/gemm/onednn.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

// Best rate of `product` (2 n^3 flops) over repeated calls for about `seconds`, in GFLOP/s.
double best_gflops(int n, double seconds, const std::function<void()>& product) {
  product();  // warm-up: page faults, thread start-up
  double best = 1e30, total = 0;
  while (total < seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    product();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, t);
    total += t;
  }
  return 2.0 * n * double(n) * n / best * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  namespace openblas = hattn::detail::openblas;
  std::printf("OpenBLAS %s, kernel %s\n", openblas::version().c_str(), openblas::kernel().c_str());
#if HATTN_GEMM_PEAK_ONEDNN
  std::printf("oneDNN %s, isa %s\n", hattn::detail::onednn::version().c_str(), hattn::detail::onednn::isa().c_str());
#endif
  double best[2] = {0, 0};
  for (int n : {1024, 2048, 4096}) {
    std::vector<float> a(std::size_t(n) * n), b(a.size()), c(a.size());
    std::mt19937 g(1);
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto* v : {&a, &b})
      for (float& x : *v) x = u(g);
    for (int threads : {1, cores}) {
      openblas_set_num_threads(threads);
      const double blas = best_gflops(n, seconds, [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a.data(), n, b.data(), n, 0, c.data(), n);
      });
      std::printf("openblas  n=%4d threads=%d  %7.1f GFLOP/s\n", n, threads, blas);
      best[threads == 1 ? 0 : 1] = std::max(best[threads == 1 ? 0 : 1], blas);
#if HATTN_GEMM_PEAK_ONEDNN
      hattn::detail::onednn::set_openmp_threads(threads);
      const double dnnl = best_gflops(n, seconds, [&] {
        dnnl_sgemm('N', 'N', n, n, n, 1, a.data(), n, b.data(), n, 0, c.data(), n);
      });
      std::printf("onednn    n=%4d threads=%d  %7.1f GFLOP/s\n", n, threads, dnnl);
      best[threads == 1 ? 0 : 1] = std::max(best[threads == 1 ? 0 : 1], dnnl);
#endif
    }
    // hattn::gemm sets each backend call single-threaded itself (once per thread).
    const auto hattn_gemm = [n](const float* x, const float* y, float* z) {
      hattn::gemm<float>(hattn::Trans::no, hattn::Trans::no, n, n, n, 1.0f, x, n, y, n, 0.0f, z, n);
    };
    const double vec = best_gflops(n, seconds, [&] { hattn_gemm(a.data(), b.data(), c.data()); });
    std::printf("hattn     n=%4d threads=%d  %7.1f GFLOP/s  (std::vector operands)\n", n,
                hattn::max_threads(), vec);
    const hattn::Index nn = hattn::Index(n) * n;
    hattn::Arena<float> arena(3 * hattn::ArenaPlan::round_up<float>(nn));
    auto av = arena.view(nn), bv = arena.view(nn), cv = arena.view(nn);  // (n * n) each
    std::copy(a.begin(), a.end(), av.data);
    std::copy(b.begin(), b.end(), bv.data);
    const double are = best_gflops(n, seconds, [&] { hattn_gemm(av.data, bv.data, cv.data); });
    std::printf("hattn     n=%4d threads=%d  %7.1f GFLOP/s  (hattn::Arena operands)\n", n,
                hattn::max_threads(), are);
  }
  std::printf("best f32 GEMM: %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n", best[0], best[1], cores);
  return 0;
}
