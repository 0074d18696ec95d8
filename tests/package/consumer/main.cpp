// Consumer of hattn: a linear layer checked against a hand computation and against a plain loop
// on random inputs, running the GEMM backend hattn was configured with. Exits non-zero on any mismatch.
#include <hattn/hattn.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

int failures = 0;

// The float error bound of y = x W^T + b for any GEMM kernel: a float sum of k products and the
// bias is within gamma_(k+1) (sum |x w| + |b|) of the exact sum, gamma_n = n u / (1 - n u), u = 2^-24.
double linear_bound(long k, double magnitude) {
  const double n = double(k + 1), u = std::ldexp(1.0, -24);
  return n * u / (1 - n * u) * magnitude;
}

void expect_near(double got, double want, double tol, const char* what, long i) {
  if (!(std::fabs(got - want) <= tol)) {
    std::fprintf(stderr, "mismatch in %s[%ld]: got %.9g, want %.9g\n", what, i, got, want);
    ++failures;
  }
}

}  // namespace

int main() {
  using hattn::View;

  // x (2, 3), W (2, 3), b (2): y = x W^T + b, worked out by hand.
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  const std::vector<float> w = {1, 0, -1, 0.5f, 0.5f, 0.5f};
  const std::vector<float> b = {0.25f, -1};
  const std::vector<float> want = {-1.75f, 2, -1.75f, 6.5f};
  std::vector<float> y(4, -99.0f);
  hattn::ops::linear_forward<float>(View<float, 2>(y.data(), 2, 2), View<const float, 2>(x.data(), 2, 3),
                                    View<const float, 2>(w.data(), 2, 3), View<const float, 1>(b.data(), 2));
  for (long i = 0; i < 4; ++i) {
    double magnitude = std::fabs(b[i % 2]);
    for (long l = 0; l < 3; ++l) magnitude += std::fabs(double(x[i / 2 * 3 + l]) * double(w[i % 2 * 3 + l]));
    expect_near(y[i], want[i], linear_bound(3, magnitude), "hand-computed y", i);
  }

  // Random (M, K) x (N, K)^T, large enough for the parallel GEMM path, against a double loop.
  constexpr long m = 200, k = 70, n = 150;
  hattn::Generator gen(2024);
  std::vector<float> xr(m * k), wr(n * k), br(n), yr(m * n);
  for (auto* v : {&xr, &wr, &br})
    for (float& e : *v) e = static_cast<float>(gen.uniform(-1.0, 1.0));
  hattn::ops::linear_forward<float>(View<float, 2>(yr.data(), m, n), View<const float, 2>(xr.data(), m, k),
                                    View<const float, 2>(wr.data(), n, k), View<const float, 1>(br.data(), n));
  for (long i = 0; i < m; ++i)
    for (long j = 0; j < n; ++j) {
      double s = br[j], magnitude = std::fabs(br[j]);
      for (long l = 0; l < k; ++l) {
        s += double(xr[i * k + l]) * double(wr[j * k + l]);
        magnitude += std::fabs(double(xr[i * k + l]) * double(wr[j * k + l]));
      }
      expect_near(yr[i * n + j], s, linear_bound(k, magnitude), "random y", i * n + j);
    }

  // The backend the package was configured with is the one this program links and runs.
  const hattn::GemmInfo gemm = hattn::gemm_info();
  std::printf("hattn consumer: %s\n", gemm.summary().c_str());
  const std::string expected = HATTN_CONSUMER_EXPECT_GEMM;
  if (!expected.empty() && gemm.backend != expected) {
    std::fprintf(stderr, "hattn consumer: gemm backend %s, expected %s\n", gemm.backend.c_str(), expected.c_str());
    ++failures;
  }

  if (failures != 0) {
    std::fprintf(stderr, "hattn consumer: %d mismatches\n", failures);
    return 1;
  }
  std::printf("hattn consumer: linear_forward matches (hand-computed 2x2, random %ldx%ld)\n", m, n);
  return 0;
}
