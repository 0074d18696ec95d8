#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <span>
#include <tuple>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/ops/layernorm.hpp"
#include "support/float_error.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::View;
namespace ops = hattn::ops;
namespace test = hattn::test;
namespace fe = hattn::test::fe;

namespace {

struct NaiveLayerNorm {
  std::vector<double> y, mean, rstd;
};

// LayerNorm by loops in double: biased variance, eps 1e-5.
NaiveLayerNorm naive_layernorm(const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>& b, Index M, Index d) {
  NaiveLayerNorm r{std::vector<double>(M * d), std::vector<double>(M), std::vector<double>(M)};
  for (Index i = 0; i < M; ++i) {
    double mu = 0;
    for (Index j = 0; j < d; ++j) mu += x[i * d + j];
    mu /= double(d);
    double var = 0;
    for (Index j = 0; j < d; ++j) var += (x[i * d + j] - mu) * (x[i * d + j] - mu);
    var /= double(d);
    r.mean[i] = mu;
    r.rstd[i] = 1.0 / std::sqrt(var + 1e-5);
    for (Index j = 0; j < d; ++j) r.y[i * d + j] = (x[i * d + j] - mu) * r.rstd[i] * w[j] + b[j];
  }
  return r;
}

// Every entry of a float forward within fe::layernorm_row's bound for double statistics (hattn
// accumulates them in double and rounds y and rstd once to float); returns the worst error / bound.
double check_float(const std::vector<float>& y, const std::vector<float>& rstd, const std::vector<float>& x,
                   const std::vector<float>& w, const std::vector<float>& b, Index M, Index d) {
  const std::vector<double> wd(w.begin(), w.end()), bd(b.begin(), b.end());
  fe::Worst worst;
  for (Index i = 0; i < M; ++i) {
    const std::vector<double> row(x.begin() + i * d, x.begin() + (i + 1) * d);
    const fe::LayerNormRow ref = fe::layernorm_row(row, wd, bd, fe::u_double);
    INFO("row " << i << ": rstd " << rstd[i] << " vs " << ref.rstd << ", bound " << ref.rstd_error);
    REQUIRE(worst(rstd[i], ref.rstd, ref.rstd_error) <= 1);
    for (Index j = 0; j < d; ++j) {
      INFO("y(" << i << ", " << j << ") " << y[i * d + j] << " vs " << ref.y[j] << ", bound " << ref.y_error[j]);
      REQUIRE(worst(y[i * d + j], ref.y[j], ref.y_error[j]) <= 1);
    }
  }
  return worst.ratio;
}

template <class T>
void run_forward(std::vector<T>& y, std::vector<T>& mean, std::vector<T>& rstd, const std::vector<T>& x,
                 const std::vector<T>& w, const std::vector<T>& b, Index M, Index d) {
  ops::layernorm_forward<T>(View<T, 2>(y.data(), M, d), View<T, 1>(mean.data(), M),
                            View<T, 1>(rstd.data(), M), View<const T, 2>(x.data(), M, d),
                            View<const T, 1>(w.data(), d), View<const T, 1>(b.data(), d));
}

}  // namespace

TEST_CASE("layernorm forward matches a naive loop and saves mean and rstd", "[layernorm]") {
  fe::Worst worst;
  for (auto [M, d] : {std::pair<Index, Index>{1, 1}, {1, 2}, {5, 7}, {13, 33}, {300, 130}}) {
    const auto x = test::uniform(M * d, 1, -2.0, 3.0), w = test::uniform(d, 2), b = test::uniform(d, 3);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> y(M * d, nan), mean(M, nan), rstd(M, nan);
    run_forward(y, mean, rstd, x, w, b, M, d);
    const auto ref = naive_layernorm(x, w, b, M, d);
    for (Index i = 0; i < M * d; ++i) REQUIRE(y[i] == Approx(ref.y[i]).epsilon(1e-12).margin(1e-12));
    for (Index i = 0; i < M; ++i) {
      REQUIRE(mean[i] == Approx(ref.mean[i]).epsilon(1e-12).margin(1e-12));
      REQUIRE(rstd[i] == Approx(ref.rstd[i]).epsilon(1e-12));
    }

    // Float: y and rstd within the LayerNorm bound of the exact values on the same float x, w, b.
    std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()), bf(b.begin(), b.end());
    std::vector<float> yf(M * d), meanf(M), rstdf(M);
    run_forward(yf, meanf, rstdf, xf, wf, bf, M, d);
    worst.ratio = std::max(worst.ratio, check_float(yf, rstdf, xf, wf, bf, M, d));
  }
  worst.print("layernorm float");
}

TEST_CASE("layernorm statistics survive a large common offset in float", "[layernorm]") {
  // Rows of 3000 + U(-1, 1): E[x^2] - E[x]^2 in float would lose the whole variance (~0.33)
  // to the rounding of 9e6; the two-pass double statistics keep it.
  const Index M = 6, d = 257;
  const auto noise = test::uniform(M * d, 21);
  std::vector<float> x(M * d), w(d, 1.f), b(d, 0.f), y(M * d), mean(M), rstd(M);
  for (Index i = 0; i < M * d; ++i) x[i] = 3000.f + float(noise[i]);
  run_forward(y, mean, rstd, x, w, b, M, d);
  // The same bound: the offset enters through e_mu = gamma_d(2^-53) sum |x| / d only, about 1e-10
  // here, while a float accumulator's gamma_d(2^-24) 3000 would be about 0.05.
  const double worst = check_float(y, rstd, x, w, b, M, d);
  fe::Worst{worst}.print("layernorm float, offset 3000");
}

TEST_CASE("layernorm gradients pass central differences in double", "[layernorm][gradcheck]") {
  // (M, d, which of x, w, b get a gradient); d = 67 and 130 span several column blocks.
  for (auto [M, d, want_x, want_w, want_b] :
       {std::tuple<Index, Index, bool, bool, bool>{1, 3, true, true, true}, {4, 5, true, true, true},
        {7, 13, true, true, true}, {3, 67, true, true, true}, {2, 130, true, true, true},
        {5, 6, true, false, false}, {5, 6, false, true, false}, {5, 6, false, false, true}}) {
    test::OpUnderTest op;
    op.args = {{"x", test::uniform(M * d, 30, -2.0, 2.0), want_x},
               {"w", test::uniform(d, 31, -1.5, 1.5), want_w},
               {"b", test::uniform(d, 32), want_b}};
    op.out_size = M * d;
    std::vector<double> mean(M), rstd(M), scratch(M * d);
    op.forward = [&](const std::vector<double*>& a, double* y) {
      ops::layernorm_forward<double>(View<double, 2>(y, M, d), View<double, 1>(mean.data(), M),
                                     View<double, 1>(rstd.data(), M), View<const double, 2>(a[0], M, d),
                                     View<const double, 1>(a[1], d), View<const double, 1>(a[2], d));
    };
    op.backward = [&](const std::vector<double*>& a, const double*, const double* dy,
                      const std::vector<double*>& g) {
      op.forward(a, scratch.data());  // mean and rstd of these arguments
      ops::layernorm_backward<double>(
          View<const double, 2>(dy, M, d), View<const double, 2>(a[0], M, d), View<const double, 1>(a[1], d),
          View<const double, 1>(mean.data(), M), View<const double, 1>(rstd.data(), M),
          g[0] ? View<double, 2>(g[0], M, d) : View<double, 2>(), g[1] ? View<double, 1>(g[1], d) : View<double, 1>(),
          g[2] ? View<double, 1>(g[2], d) : View<double, 1>());
    };
    test::check_op(op);
  }
}

TEST_CASE("layernorm is bitwise identical with 1 and 2 threads", "[layernorm][threads]") {
  const Index M = 1000, d = 300;
  std::vector<float> x(M * d), w(d), b(d), dy(M * d);
  hattn::Generator g(6);
  for (auto* v : {&x, &w, &b, &dy})
    for (auto& e : *v) e = float(g.uniform(-1, 1));
  auto run = [&] {
    std::vector<float> y(M * d), mean(M), rstd(M), dx(M * d, 0.25f), dw(d, 0.5f), db(d, -0.5f);
    run_forward(y, mean, rstd, x, w, b, M, d);
    ops::layernorm_backward<float>(View<const float, 2>(dy.data(), M, d), View<const float, 2>(x.data(), M, d),
                                   View<const float, 1>(w.data(), d), View<const float, 1>(mean.data(), M),
                                   View<const float, 1>(rstd.data(), M), View<float, 2>(dx.data(), M, d),
                                   View<float, 1>(dw.data(), d), View<float, 1>(db.data(), d));
    for (auto* v : {&mean, &rstd, &dx, &dw, &db}) y.insert(y.end(), v->begin(), v->end());
    return y;
  };
  const auto one = test::with_threads(1, run);
  const auto two = test::with_threads(2, run);
  REQUIRE(one == two);
}

TEST_CASE("layernorm on the tape gives the direct backward's gradients", "[layernorm][tape]") {
  static_assert(hattn::TapeNode<ops::LayerNormNode<float>>);
  static_assert(hattn::TapeNode<ops::LayerNormNode<double>>);
  const Index M = 9, d = 70;
  auto x = test::uniform(M * d, 1), w = test::uniform(d, 2), b = test::uniform(d, 3), dy = test::uniform(M * d, 4);
  std::vector<double> y(M * d), mean(M), rstd(M), dx(M * d, 0.0), dw(d, 0.0), db(d, 0.0);
  hattn::Tape tape;
  ops::layernorm<double>(&tape, {View<double, 2>(y.data(), M, d), View<double, 2>(dy.data(), M, d)},
                         View<double, 1>(mean.data(), M), View<double, 1>(rstd.data(), M),
                         {View<double, 2>(x.data(), M, d), View<double, 2>(dx.data(), M, d)},
                         {View<double, 1>(w.data(), d), View<double, 1>(dw.data(), d)},
                         {View<double, 1>(b.data(), d), View<double, 1>(db.data(), d)});
  REQUIRE(tape.size() == 1);
  tape.backward();

  std::vector<double> y_ref(M * d), mean_ref(M), rstd_ref(M), dx_ref(M * d, 0.0), dw_ref(d, 0.0), db_ref(d, 0.0);
  run_forward(y_ref, mean_ref, rstd_ref, x, w, b, M, d);
  ops::layernorm_backward<double>(View<const double, 2>(dy.data(), M, d), View<const double, 2>(x.data(), M, d),
                                  View<const double, 1>(w.data(), d), View<const double, 1>(mean_ref.data(), M),
                                  View<const double, 1>(rstd_ref.data(), M), View<double, 2>(dx_ref.data(), M, d),
                                  View<double, 1>(dw_ref.data(), d), View<double, 1>(db_ref.data(), d));
  REQUIRE(y == y_ref);
  REQUIRE(mean == mean_ref);
  REQUIRE(rstd == rstd_ref);
  REQUIRE(dx == dx_ref);
  REQUIRE(dw == dw_ref);
  REQUIRE(db == db_ref);
  double norm = 0;
  for (double v : dx) norm += std::abs(v);
  REQUIRE(norm > 0);
}

TEST_CASE("layernorm rejects mismatched and empty shapes with exact messages, writing nothing",
          "[layernorm][errors]") {
  const Index M = 3, d = 4;
  std::vector<float> x(M * d, 1.f), w(d, 1.f), b(d, 0.f), y(M * d, -7.f), mean(M, -7.f), rstd(M, -7.f);
  std::vector<float> dx(M * d, 9.f), dw(d, 9.f), db(d, 9.f);
  View<float, 2> yv(y.data(), M, d);
  View<float, 1> mv(mean.data(), M), rv(rstd.data(), M);
  View<const float, 2> xv(x.data(), M, d);
  View<const float, 1> wv(w.data(), d), bv(b.data(), d);

  REQUIRE_THROWS_WITH(ops::layernorm_forward<float>(yv, mv, rv, xv, wv, View<const float, 1>(b.data(), 3)),
                      "layernorm_forward: shape mismatch: y (3, 4), mean (3), rstd (3), x (3, 4), w (4), b (3) "
                      "(want y (M, d), mean (M), rstd (M), x (M, d), w (d), b (d))");
  REQUIRE_THROWS_WITH(ops::layernorm_forward<float>(View<float, 2>(y.data(), 4, 3), mv, rv, xv, wv, bv),
                      "layernorm_forward: shape mismatch: y (4, 3), mean (3), rstd (3), x (3, 4), w (4), b (4) "
                      "(want y (M, d), mean (M), rstd (M), x (M, d), w (d), b (d))");
  REQUIRE_THROWS_WITH(ops::layernorm_forward<float>(yv, View<float, 1>(mean.data(), 2), rv, xv, wv, bv),
                      "layernorm_forward: shape mismatch: y (3, 4), mean (2), rstd (3), x (3, 4), w (4), b (4) "
                      "(want y (M, d), mean (M), rstd (M), x (M, d), w (d), b (d))");
  REQUIRE_THROWS_WITH(ops::layernorm_forward<float>(yv, mv, rv, xv, {}, bv),
                      "layernorm_forward: shape mismatch: y (3, 4), mean (3), rstd (3), x (3, 4), w (0), b (4) "
                      "(want y (M, d), mean (M), rstd (M), x (M, d), w (d), b (d))");
  REQUIRE_THROWS_WITH(ops::layernorm_forward<float>(View<float, 2>(y.data(), 3, 0), mv, rv,
                                                    View<const float, 2>(x.data(), 3, 0), wv, bv),
                      "layernorm_forward: zero-sized dimension: x (3, 0)");
  REQUIRE_THROWS_WITH(ops::layernorm_forward<float>(View<float, 2>(y.data(), 0, 4), mv, rv,
                                                    View<const float, 2>(x.data(), 0, 4), wv, bv),
                      "layernorm_forward: zero-sized dimension: x (0, 4)");

  View<const float, 2> dyv(x.data(), M, d);
  View<float, 2> dxv(dx.data(), M, d);
  View<float, 1> dwv(dw.data(), d), dbv(db.data(), d);
  REQUIRE_THROWS_WITH(ops::layernorm_backward<float>(dyv, xv, wv, View<const float, 1>(mean.data(), M),
                                                     View<const float, 1>(rstd.data(), 2), dxv, dwv, dbv),
                      "layernorm_backward: shape mismatch: dy (3, 4), x (3, 4), w (4), mean (3), rstd (2) "
                      "(want dy (M, d), x (M, d), w (d), mean (M), rstd (M))");
  REQUIRE_THROWS_WITH(ops::layernorm_backward<float>(View<const float, 2>(x.data(), 4, 3), xv, wv,
                                                     View<const float, 1>(mean.data(), M),
                                                     View<const float, 1>(rstd.data(), M), dxv, dwv, dbv),
                      "layernorm_backward: shape mismatch: dy (4, 3), x (3, 4), w (4), mean (3), rstd (3) "
                      "(want dy (M, d), x (M, d), w (d), mean (M), rstd (M))");
  REQUIRE_THROWS_WITH(ops::layernorm_backward<float>(dyv, xv, wv, View<const float, 1>(mean.data(), M),
                                                     View<const float, 1>(rstd.data(), M), dxv, dwv,
                                                     View<float, 1>(db.data(), 3)),
                      "layernorm_backward: gradient shape mismatch: dx (3, 4) for x (3, 4), dw (4), db (3) "
                      "for w and b (4)");
  REQUIRE_THROWS_WITH(ops::layernorm_backward<float>(dyv, xv, wv, View<const float, 1>(mean.data(), M),
                                                     View<const float, 1>(rstd.data(), M),
                                                     View<float, 2>(dx.data(), 2, 6), {}, {}),
                      "layernorm_backward: gradient shape mismatch: dx (2, 6) for x (3, 4), dw none, db none "
                      "for w and b (4)");
  for (float v : y) REQUIRE(v == -7.f);
  for (float v : mean) REQUIRE(v == -7.f);
  for (float v : rstd) REQUIRE(v == -7.f);
  for (auto* g : {&dx, &dw, &db})
    for (float v : *g) REQUIRE(v == 9.f);
}
