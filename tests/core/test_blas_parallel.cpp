#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <tuple>
#include <type_traits>
#include <vector>

#include "hattn/core/blas.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/rng.hpp"
#include "support/float_error.hpp"

using hattn::Index;
using hattn::Trans;

namespace {

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed) {
  hattn::Generator g(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = T(g.uniform(-1, 1));
  return v;
}

// Element (i, j) of op(X) for X stored row-major with row stride ld.
template <class T>
T at(const std::vector<T>& x, Trans t, Index i, Index j, Index ld) {
  return t == Trans::yes ? x[j * ld + i] : x[i * ld + j];
}

// C = alpha op(A) op(B) + beta C by loops, then compared with hattn::gemm: doubles within `tol`
// (relative and absolute), floats within the float error bound of the exact value for any kernel,
// gamma_(k+2) (|alpha| sum |a b| + |beta c|): k + 1 terms, the products and alpha rounding up to
// twice each.
template <class T>
void check_gemm(Trans ta, Trans tb, Index m, Index n, Index k, T alpha, T beta, Index pad, double tol = 0) {
  namespace fe = hattn::test::fe;
  const Index lda = (ta == Trans::yes ? m : k) + pad, ldb = (tb == Trans::yes ? k : n) + pad, ldc = n + pad;
  const Index a_rows = ta == Trans::yes ? k : m, b_rows = tb == Trans::yes ? n : k;
  auto a = random_vector<T>(a_rows * lda, 1), b = random_vector<T>(b_rows * ldb, 2);
  auto c = random_vector<T>(m * ldc, 3), ref = c;
  std::vector<double> exact(m * ldc), bound(m * ldc);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) {
      double s = 0, mag = 0;
      for (Index l = 0; l < k; ++l) {
        const double p = double(at(a, ta, i, l, lda)) * double(at(b, tb, l, j, ldb));
        s += p;
        mag += std::abs(p);
      }
      const double c0 = double(c[i * ldc + j]);
      exact[i * ldc + j] = double(alpha) * s + double(beta) * c0;
      bound[i * ldc + j] = fe::dot_bound(k, std::abs(double(alpha)) * mag + std::abs(double(beta) * c0), 2);
      ref[i * ldc + j] = T(exact[i * ldc + j]);
    }
  hattn::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < ldc; ++j) {
      INFO("C(" << i << ", " << j << ") with m=" << m << " n=" << n << " k=" << k);
      if (j >= n) {
        REQUIRE(c[i * ldc + j] == ref[i * ldc + j]);  // padding columns untouched
      } else if constexpr (std::is_same_v<T, float>) {
        REQUIRE(std::abs(double(c[i * ldc + j]) - exact[i * ldc + j]) <= bound[i * ldc + j]);
      } else {
        REQUIRE(double(c[i * ldc + j]) == Approx(double(ref[i * ldc + j])).epsilon(tol).margin(tol));
      }
    }
}

}  // namespace

TEST_CASE("gemm matches loops for every transpose, stride, alpha and beta", "[blas]") {
  for (Trans ta : {Trans::no, Trans::yes})
    for (Trans tb : {Trans::no, Trans::yes})
      for (auto [m, n, k] : {std::tuple<Index, Index, Index>{1, 1, 1}, {5, 7, 3}, {33, 17, 9}}) {
        check_gemm<double>(ta, tb, m, n, k, 1.0, 0.0, 0, 1e-13);
        check_gemm<double>(ta, tb, m, n, k, 0.5, 1.0, 3, 1e-13);
        check_gemm<float>(ta, tb, m, n, k, -2.0f, 1.0f, 2);
      }
}

TEST_CASE("gemm's tiled paths (by rows and by columns) match loops", "[blas]") {
  for (Trans ta : {Trans::no, Trans::yes})
    for (Trans tb : {Trans::no, Trans::yes}) {
      check_gemm<double>(ta, tb, 300, 140, 100, 1.0, 1.0, 1, 1e-12);  // row tiles
      check_gemm<double>(ta, tb, 150, 700, 60, 1.0, 0.0, 0, 1e-12);   // column tiles
    }
}

// An A^T whose stored rows are at least detail::gemm_transpose_stride_bytes apart is computed through
// the transposed product: the single block (with more than gemm_transpose_cols columns), row tiles
// and column tiles, beta 0, 1 and other, padded C (its padding untouched).
TEST_CASE("gemm through the transposed product matches loops", "[blas]") {
  REQUIRE(hattn::detail::gemm_by_transpose<float>(Trans::yes, Trans::no, 1024));
  REQUIRE_FALSE(hattn::detail::gemm_by_transpose<float>(Trans::yes, Trans::no, 1023));
  REQUIRE_FALSE(hattn::detail::gemm_by_transpose<float>(Trans::yes, Trans::yes, 4096));
  REQUIRE_FALSE(hattn::detail::gemm_by_transpose<float>(Trans::no, Trans::no, 4096));
  REQUIRE(hattn::detail::gemm_by_transpose<double>(Trans::yes, Trans::no, 512));
  for (auto [m, n, k] : {std::tuple<Index, Index, Index>{20, 700, 50},  // one block, two scratch blocks
                         {1200, 140, 100},                               // row tiles
                         {150, 1300, 60}}) {                             // column tiles
    const Index pad = 1100;  // lda = m + pad >= 1024 floats
    check_gemm<float>(Trans::yes, Trans::no, m, n, k, -2.0f, 1.0f, pad);
    check_gemm<float>(Trans::yes, Trans::no, m, n, k, 1.0f, 0.0f, pad);
    check_gemm<float>(Trans::yes, Trans::no, m, n, k, 0.5f, -0.75f, pad);
    check_gemm<double>(Trans::yes, Trans::no, m, n, k, 1.0, 1.0, pad, 1e-12);
  }
}

TEST_CASE("gemm through the transposed product ignores C when beta is 0 and keeps its bits across threads",
          "[blas][threads]") {
  const Index m = 1024, n = 256, k = 700, lda = 4096;  // the head's weight gradient, in small
  const auto a = random_vector<float>(k * lda, 6), b = random_vector<float>(k * n, 7);
  auto run = [&](float beta, float fill) {
    std::vector<float> c(m * n, fill);
    hattn::gemm<float>(Trans::yes, Trans::no, m, n, k, 1.0f, a.data(), lda, b.data(), n, beta, c.data(), n);
    return c;
  };
  for (float x : run(0.0f, std::nanf(""))) REQUIRE(std::isfinite(x));
  std::vector<float> one, two;
  {
    hattn::ThreadLimit limit(1);
    one = run(1.0f, 0.25f);
  }
  {
    hattn::ThreadLimit limit(2);
    two = run(1.0f, 0.25f);
  }
  REQUIRE(one == two);
}

TEST_CASE("gemm gives bitwise the same result with 1 and 2 threads", "[blas][threads]") {
  const Index m = 700, n = 650, k = 96;
  const auto a = random_vector<float>(m * k, 4), b = random_vector<float>(k * n, 5);
  auto run = [&] {
    std::vector<float> c(m * n, 1.0f);
    hattn::gemm<float>(Trans::no, Trans::no, m, n, k, 1.0f, a.data(), k, b.data(), n, 1.0f, c.data(), n);
    return c;
  };
  std::vector<float> one, two;
  {
    hattn::ThreadLimit limit(1);
    REQUIRE(hattn::max_threads() == 1);
    one = run();
  }
  {
    hattn::ThreadLimit limit(2);
    two = run();
  }
  REQUIRE(one == two);
}

TEST_CASE("gemm rejects negative sizes and short leading dimensions", "[blas][errors]") {
  std::vector<float> x(16);
  REQUIRE_THROWS_WITH(hattn::gemm<float>(Trans::no, Trans::no, 2, 2, 3, 1.f, x.data(), 2, x.data(), 2,
                                         0.f, x.data(), 2),
                      "gemm: leading dimensions (2, 2, 2) too small for sizes (2, 2, 3)");
  REQUIRE_THROWS_WITH(hattn::gemm<float>(Trans::no, Trans::no, -1, 2, 3, 1.f, x.data(), 3, x.data(), 2,
                                         0.f, x.data(), 2),
                      "gemm: negative size (-1, 2, 3)");
}

TEST_CASE("parallel_for visits every index once, nests, and honours thread limits", "[parallel]") {
  std::vector<std::atomic<int>> hits(1000);
  hattn::parallel_for(1000, [&](Index i) {
    hattn::parallel_for(3, [&](Index) { hits[std::size_t(i)].fetch_add(1); });
  });
  for (auto& h : hits) REQUIRE(h.load() == 3);
  hattn::parallel_for(0, [&](Index) { FAIL("called for an empty range"); });
  REQUIRE_THROWS_WITH(hattn::ThreadLimit(0), "ThreadLimit: thread count must be >= 1, got 0");
  {
    hattn::ThreadLimit limit(1);
    REQUIRE(hattn::max_threads() == 1);
  }
  REQUIRE(hattn::max_threads() >= 1);
}

TEST_CASE("RowMode::stable computes every row of C the same whatever the number of rows", "[blas]") {
  for (auto [n, k] : {std::pair<Index, Index>{31, 16}, {700, 64}}) {
    const auto a = random_vector<float>(500 * k, 6), b = random_vector<float>(n * k, 7);
    auto run = [&](Index m, hattn::RowMode mode) {
      std::vector<float> c(std::size_t(m * n), 0.5f);
      hattn::gemm<float>(Trans::no, Trans::yes, m, n, k, 1.0f, a.data(), k, b.data(), k, 1.0f, c.data(), n, mode);
      return c;
    };
    const auto ref = run(500, hattn::RowMode::stable);
    for (Index m : {1, 7, 42, 48, 96, 130, 250}) {
      const auto c = run(m, hattn::RowMode::stable);
      INFO("n = " << n << ", m = " << m);
      REQUIRE(std::equal(c.begin(), c.end(), ref.begin()));
    }
  }
}
