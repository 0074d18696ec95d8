#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "hattn/ops/linear.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::View;
namespace ops = hattn::ops;
namespace test = hattn::test;

namespace {

// y = x W^T + b by loops, in double.
std::vector<double> naive_linear(const std::vector<double>& x, const std::vector<double>& w,
                                 const std::vector<double>& b, Index m, Index k, Index n) {
  std::vector<double> y(m * n);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) {
      double s = b.empty() ? 0.0 : b[j];
      for (Index l = 0; l < k; ++l) s += x[i * k + l] * w[j * k + l];
      y[i * n + j] = s;
    }
  return y;
}

}  // namespace

TEST_CASE("linear forward matches a naive loop, including the tiled parallel path", "[linear]") {
  for (auto [m, k, n] : {std::tuple<Index, Index, Index>{1, 1, 1}, {7, 5, 3}, {300, 130, 129}}) {
    auto x = test::uniform(m * k, 1), w = test::uniform(n * k, 2), b = test::uniform(n, 3);
    std::vector<double> y(m * n);
    ops::linear_forward<double>(View<double, 2>(y.data(), m, n), View<const double, 2>(x.data(), m, k),
                                View<const double, 2>(w.data(), n, k), View<const double, 1>(b.data(), n));
    const auto ref = naive_linear(x, w, b, m, k, n);
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == Approx(ref[i]).epsilon(1e-12).margin(1e-12));

    // Float is within the float error bound of the double reference, for any kernel: rounding x, w
    // and b to float moves each product by 2u |x w| and b by u |b|, and the float sum of k products
    // plus the bias is within gamma_(k+1) of the exact one, so |yf - y| <= gamma_(k+3) (sum |x w| + |b|)
    // with gamma_n = n u / (1 - n u), u = 2^-24.
    std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()), bf(b.begin(), b.end()), yf(m * n);
    ops::linear_forward<float>(View<float, 2>(yf.data(), m, n), View<const float, 2>(xf.data(), m, k),
                               View<const float, 2>(wf.data(), n, k), View<const float, 1>(bf.data(), n));
    const double u = std::ldexp(1.0, -24), gamma = double(k + 3) * u / (1 - double(k + 3) * u);
    for (Index i = 0; i < m; ++i)
      for (Index j = 0; j < n; ++j) {
        double magnitude = std::abs(b[j]);
        for (Index l = 0; l < k; ++l) magnitude += std::abs(x[i * k + l] * w[j * k + l]);
        INFO("y(" << i << ", " << j << "), k = " << k);
        REQUIRE(std::abs(double(yf[i * n + j]) - ref[i * n + j]) <= gamma * magnitude);
      }
  }
}

TEST_CASE("linear gradients pass central differences in double", "[linear][gradcheck]") {
  for (auto [m, k, n, bias] : {std::tuple<Index, Index, Index, bool>{1, 1, 1, true},
                               {3, 5, 7, true}, {17, 6, 13, true}, {4, 9, 2, false}}) {
    test::OpUnderTest op;
    op.args = {{"x", test::uniform(m * k, 10)}, {"W", test::uniform(n * k, 11)},
               {"b", bias ? test::uniform(n, 12) : std::vector<double>{}}};
    op.out_size = m * n;
    op.forward = [&](const std::vector<double*>& a, double* y) {
      ops::linear_forward<double>(View<double, 2>(y, m, n), View<const double, 2>(a[0], m, k),
                                  View<const double, 2>(a[1], n, k),
                                  bias ? View<const double, 1>(a[2], n) : View<const double, 1>());
    };
    op.backward = [&](const std::vector<double*>& a, const double*, const double* dy,
                      const std::vector<double*>& g) {
      ops::linear_backward<double>(View<const double, 2>(dy, m, n), View<const double, 2>(a[0], m, k),
                                   View<const double, 2>(a[1], n, k), View<double, 2>(g[0], m, k),
                                   View<double, 2>(g[1], n, k),
                                   bias ? View<double, 1>(g[2], n) : View<double, 1>());
    };
    test::check_op(op);
  }
}

TEST_CASE("linear backward of the tiled path matches naive gradients", "[linear]") {
  const Index m = 300, k = 130, n = 129;
  auto x = test::uniform(m * k, 1), w = test::uniform(n * k, 2), dy = test::uniform(m * n, 3);
  std::vector<double> dx(m * k, 0), dw(n * k, 0), db(n, 0);
  ops::linear_backward<double>(View<const double, 2>(dy.data(), m, n), View<const double, 2>(x.data(), m, k),
                               View<const double, 2>(w.data(), n, k), View<double, 2>(dx.data(), m, k),
                               View<double, 2>(dw.data(), n, k), View<double, 1>(db.data(), n));
  for (Index i = 0; i < m; i += 37)
    for (Index l = 0; l < k; l += 11) {
      double s = 0;
      for (Index j = 0; j < n; ++j) s += dy[i * n + j] * w[j * k + l];
      REQUIRE(dx[i * k + l] == Approx(s).epsilon(1e-12));
    }
  for (Index j = 0; j < n; j += 13) {
    double sb = 0;
    for (Index i = 0; i < m; ++i) sb += dy[i * n + j];
    REQUIRE(db[j] == Approx(sb).epsilon(1e-12));
    for (Index l = 0; l < k; l += 17) {
      double s = 0;
      for (Index i = 0; i < m; ++i) s += dy[i * n + j] * x[i * k + l];
      REQUIRE(dw[j * k + l] == Approx(s).epsilon(1e-12));
    }
  }
}

TEST_CASE("linear is bitwise identical with 1 and 2 threads", "[linear][threads]") {
  const Index m = 520, k = 192, n = 300;
  std::vector<float> x(m * k), w(n * k), b(n), dy(m * n);
  hattn::Generator g(5);
  for (auto* v : {&x, &w, &b, &dy})
    for (auto& e : *v) e = float(g.uniform(-1, 1));
  auto run = [&] {
    std::vector<float> y(m * n), dx(m * k, 0.f), dw(n * k, 0.f), db(n, 0.f);
    ops::linear_forward<float>(View<float, 2>(y.data(), m, n), View<const float, 2>(x.data(), m, k),
                               View<const float, 2>(w.data(), n, k), View<const float, 1>(b.data(), n));
    ops::linear_backward<float>(View<const float, 2>(dy.data(), m, n), View<const float, 2>(x.data(), m, k),
                                View<const float, 2>(w.data(), n, k), View<float, 2>(dx.data(), m, k),
                                View<float, 2>(dw.data(), n, k), View<float, 1>(db.data(), n));
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), dw.begin(), dw.end());
    y.insert(y.end(), db.begin(), db.end());
    return y;
  };
  const auto one = test::with_threads(1, run);
  const auto two = test::with_threads(2, run);
  REQUIRE(one == two);
}

TEST_CASE("linear rejects mismatched and empty shapes, naming the op and the shapes", "[linear][errors]") {
  std::vector<float> buf(64);
  View<float, 2> y(buf.data(), 3, 4);
  View<const float, 2> x(buf.data(), 3, 5), w_bad(buf.data(), 4, 6), w(buf.data(), 4, 5);
  View<const float, 1> b_bad(buf.data(), 3);
  REQUIRE_THROWS_WITH(ops::linear_forward<float>(y, x, w_bad, {}),
                      "linear_forward: shape mismatch: y (3, 4), x (3, 5), W (4, 6), b none "
                      "(want y (M, N), x (M, K), W (N, K), b (N))");
  REQUIRE_THROWS_WITH(ops::linear_forward<float>(y, x, w, b_bad),
                      "linear_forward: shape mismatch: y (3, 4), x (3, 5), W (4, 5), b (3) "
                      "(want y (M, N), x (M, K), W (N, K), b (N))");
  REQUIRE_THROWS_WITH(ops::linear_forward<float>(View<float, 2>(buf.data(), 0, 4),
                                                 View<const float, 2>(buf.data(), 0, 5), w, {}),
                      "linear_forward: zero-sized dimension: x (0, 5), W (4, 5)");
  REQUIRE_THROWS_AS(ops::linear_backward<float>(View<const float, 2>(buf.data(), 3, 4), x, w,
                                                View<float, 2>(buf.data(), 3, 4), {}, {}),
                    hattn::Error);
}
