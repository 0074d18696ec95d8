// The GEMM backend's guarantees, for whichever backend this build was configured with
// (HATTN_GEMM; run it with DNNL_MAX_CPU_ISA or OPENBLAS_CORETYPE set to try other kernels of this
// CPU): RowMode::stable row bits for m = 1, 95, 96, 97 and 4096 over the model's shapes,
// bitwise results for 1 and 2 threads, accuracy against double loops within the float error bound
// gamma_k sum |a b|, and what gemm_info reports.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <tuple>
#include <vector>

#include "hattn/core/blas.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/rng.hpp"
#if defined(HATTN_GEMM_ONEDNN) && HATTN_GEMM_ONEDNN
#include "hattn/core/gemm/onednn.hpp"
#endif

using hattn::Index;
using hattn::Trans;

namespace {

std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  hattn::Generator g(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(g.uniform(-1, 1));
  return v;
}

struct Shape {
  Index n, k;
  Trans ta, tb;
};

// The model's product shapes at small and large widths: projections (x W^T), their input gradient
// (dY W), the feed-forward, attention scores and weighted sums, and a product whose k is not a
// multiple of any unroll.
constexpr Shape shapes[] = {
    {64, 64, Trans::no, Trans::yes},    {768, 768, Trans::no, Trans::yes}, {768, 3072, Trans::no, Trans::no},
    {3072, 768, Trans::no, Trans::yes}, {96, 64, Trans::no, Trans::yes},   {64, 96, Trans::no, Trans::no},
    {17, 333, Trans::no, Trans::no},    {2304, 768, Trans::no, Trans::yes}, {4000, 128, Trans::no, Trans::yes}};

constexpr Index max_rows = 4096;

// C (m, n) = op(A) op(B) + C0 with A's first m rows (A stored (max_rows, k), or (k, max_rows)
// transposed), beta = 1 over a fixed C0, so both the product and the accumulation are covered.
std::vector<float> product(const Shape& s, Index m, const std::vector<float>& a, const std::vector<float>& b,
                           const std::vector<float>& c0, hattn::RowMode mode) {
  std::vector<float> c(c0.begin(), c0.begin() + m * s.n);
  const Index lda = s.ta == Trans::yes ? max_rows : s.k, ldb = s.tb == Trans::yes ? s.k : s.n;
  hattn::gemm<float>(s.ta, s.tb, m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 1.0f, c.data(), s.n, mode);
  return c;
}

}  // namespace

TEST_CASE("RowMode::stable: every row's bits are the same for m = 1, 95, 96, 97 and 4096 rows", "[blas][rows]") {
  INFO(hattn::gemm_info().summary());
  for (const Shape& s : shapes) {
    const auto a = random_floats(std::size_t(max_rows * s.k), 11), b = random_floats(std::size_t(s.k * s.n), 12);
    const auto c0 = random_floats(std::size_t(max_rows * s.n), 13);
    const auto ref = product(s, max_rows, a, b, c0, hattn::RowMode::stable);
    for (Index m : {1, 95, 96, 97, 200, 4096}) {
      const auto c = product(s, m, a, b, c0, hattn::RowMode::stable);
      Index differing = 0;
      for (Index i = 0; i < m; ++i)
        differing += std::memcmp(c.data() + i * s.n, ref.data() + i * s.n, sizeof(float) * s.n) != 0;
      INFO("n = " << s.n << ", k = " << s.k << ", A" << (s.ta == Trans::yes ? "^T" : "") << " B"
                  << (s.tb == Trans::yes ? "^T" : "") << ", m = " << m);
      CHECK(differing == 0);
    }
  }
}

TEST_CASE("gemm is bitwise the same with 1 and 2 threads in both row modes", "[blas][threads]") {
  for (const Shape& s : shapes) {
    const auto a = random_floats(std::size_t(max_rows * s.k), 21), b = random_floats(std::size_t(s.k * s.n), 22);
    const auto c0 = random_floats(std::size_t(max_rows * s.n), 23);
    for (auto mode : {hattn::RowMode::any, hattn::RowMode::stable})
      for (Index m : {97, 1000}) {
        std::vector<float> one, two;
        {
          hattn::ThreadLimit limit(1);
          one = product(s, m, a, b, c0, mode);
        }
        {
          hattn::ThreadLimit limit(2);
          two = product(s, m, a, b, c0, mode);
        }
        INFO("n = " << s.n << ", k = " << s.k << ", m = " << m << ", stable " << (mode == hattn::RowMode::stable));
        CHECK(std::memcmp(one.data(), two.data(), sizeof(float) * one.size()) == 0);
      }
  }
}

TEST_CASE("gemm is within the float error bound gamma_k sum |a b| of the exact product", "[blas]") {
  // |fl(C) - C| <= gamma_(k+1) (sum_l |a_il b_lj| + |c0_ij|) for any summation order (Higham 3.1),
  // gamma_n = n u / (1 - n u): the bound every correct kernel meets.
  const double u = std::ldexp(1.0, -24);
  for (const Shape& s : shapes) {
    const Index m = 200;
    const auto a = random_floats(std::size_t(max_rows * s.k), 31), b = random_floats(std::size_t(s.k * s.n), 32);
    const auto c0 = random_floats(std::size_t(max_rows * s.n), 33);
    const Index lda = s.ta == Trans::yes ? max_rows : s.k, ldb = s.tb == Trans::yes ? s.k : s.n;
    const double gamma = double(s.k + 1) * u / (1 - double(s.k + 1) * u);
    for (auto mode : {hattn::RowMode::any, hattn::RowMode::stable}) {
      const auto c = product(s, m, a, b, c0, mode);
      double worst = 0;
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < s.n; ++j) {
          double exact = c0[i * s.n + j], magnitude = std::abs(exact);
          for (Index l = 0; l < s.k; ++l) {
            const double x = s.ta == Trans::yes ? a[l * lda + i] : a[i * lda + l];
            const double y = s.tb == Trans::yes ? b[j * ldb + l] : b[l * ldb + j];
            exact += x * y;
            magnitude += std::abs(x * y);
          }
          worst = std::max(worst, std::abs(double(c[i * s.n + j]) - exact) / (gamma * magnitude));
        }
      INFO("n = " << s.n << ", k = " << s.k << ": worst error / bound " << worst);
      CHECK(worst <= 1);
    }
  }
}

TEST_CASE("gemm_info names the configured backend, its kernel and the threads", "[blas][info]") {
  const hattn::GemmInfo info = hattn::gemm_info();
  INFO(info.summary());
  CHECK(info.backend == (hattn::gemm_backend == hattn::GemmBackend::onednn ? "onednn" : "openblas"));
  CHECK_FALSE(info.kernel.empty());
  CHECK_FALSE(info.version.empty());
  CHECK_FALSE(info.double_kernel.empty());
  CHECK(info.threads == hattn::max_threads());
  CHECK((info.stable_rows == info.backend || info.stable_rows == "openblas"));
  if (info.backend == "onednn") {
    CHECK(info.kernel.starts_with("isa:"));
  } else {
    CHECK(info.kernel == info.double_kernel);
  }
  CHECK(info.summary().starts_with("gemm: " + info.backend + " " + info.version + " (" + info.kernel + ")"));
  hattn::ThreadLimit limit(1);
  CHECK(hattn::gemm_info().threads == 1);
}

TEST_CASE("gemm_info warns exactly when the kernel lacks AVX2 on a CPU that has it", "[blas][info]") {
  using hattn::detail::gemm_warning;
  CHECK(gemm_warning("openblas", "Prescott", "avx512") ==
        "hattn: warning: OpenBLAS runs its generic Prescott kernel on a CPU with AVX-512 (its table of CPU "
        "models lacks this one), several times slower; set OPENBLAS_CORETYPE=SkylakeX or configure hattn "
        "with -DHATTN_GEMM=onednn");
  CHECK(gemm_warning("openblas", "Sandybridge", "avx2") ==
        "hattn: warning: OpenBLAS runs its generic Sandybridge kernel on a CPU with AVX2 (its table of CPU "
        "models lacks this one), several times slower; set OPENBLAS_CORETYPE=Haswell or configure hattn "
        "with -DHATTN_GEMM=onednn");
  CHECK(gemm_warning("openblas", "Prescott", "").empty());  // no AVX2: the generic kernel is right
  for (const char* fast : {"Haswell", "SkylakeX", "Cooperlake", "SapphireRapids", "Zen"})
    CHECK(gemm_warning("openblas", fast, "avx512").empty());
  CHECK(gemm_warning("onednn", "isa:avx", "avx2") ==
        "hattn: warning: oneDNN runs its avx kernels on a CPU with AVX2 (DNNL_MAX_CPU_ISA set?); unset "
        "DNNL_MAX_CPU_ISA for its AVX2 kernels");
  CHECK(gemm_warning("onednn", "isa:avx512_core", "avx512").empty());
  CHECK(gemm_warning("onednn", "isa:avx2", "avx512").empty());
}

#if defined(HATTN_GEMM_ONEDNN) && HATTN_GEMM_ONEDNN
namespace {
// Threads of this process (entries of /proc/self/task).
std::size_t process_threads() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}
}  // namespace

TEST_CASE("oneDNN runs every product on one thread even when the caller widened its OpenMP team after "
          "the first product, and the caller's setting stays", "[blas][threads]") {
  namespace onednn = hattn::detail::onednn;
  // A deep product with m, n <= gemm_tile: one backend call on the calling thread, which oneDNN
  // given more than one OpenMP thread would split across them, reduction dimension included.
  const Index m = 128, n = 128, k = 8192;
  const auto a = random_floats(std::size_t(m * k), 31), b = random_floats(std::size_t(k * n), 32);
  std::vector<float> first(std::size_t(m * n)), again(first.size());  // (m, n) each
  const auto product = [&](std::vector<float>& c) {
    hattn::gemm<float>(Trans::no, Trans::no, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  };
  product(first);
  const int callers = onednn::openmp_threads();
  onednn::set_openmp_threads(2);
  const std::size_t threads = process_threads();
  product(again);
  CHECK(process_threads() == threads);  // no OpenMP thread was started for it
  CHECK(onednn::openmp_threads() == 2);  // the caller's own setting is back
  CHECK(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)) == 0);
  onednn::set_openmp_threads(callers);
}
#endif
