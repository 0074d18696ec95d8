#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <tuple>
#include <vector>

#include "hattn/ops/cross_entropy.hpp"
#include "hattn/ops/softmax.hpp"
#include "support/float_error.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::View;
namespace ops = hattn::ops;
namespace test = hattn::test;
namespace fe = hattn::test::fe;

namespace {

// softmax by the textbook formula (no max subtraction), in double: fine for |x| of a few units.
std::vector<double> naive_softmax(const std::vector<double>& x, Index m, Index v) {
  std::vector<double> y(m * v);
  for (Index i = 0; i < m; ++i) {
    double s = 0;
    for (Index j = 0; j < v; ++j) s += std::exp(x[i * v + j]);
    for (Index j = 0; j < v; ++j) y[i * v + j] = std::exp(x[i * v + j]) / s;
  }
  return y;
}

// Mean of -log softmax(x[i])[t_i] over rows with t_i != -100, by the textbook formula.
double naive_cross_entropy(const std::vector<double>& x, const std::vector<std::int32_t>& t, Index m,
                           Index v) {
  const auto p = naive_softmax(x, m, v);
  double s = 0;
  int n = 0;
  for (Index i = 0; i < m; ++i) {
    if (t[i] == -100) continue;
    s -= std::log(p[i * v + t[i]]);
    ++n;
  }
  return s / n;
}

// Targets in [0, v), with every row listed in `ignored` set to -100.
std::vector<std::int32_t> make_targets(Index m, Index v, std::uint64_t seed,
                                       const std::vector<Index>& ignored = {}) {
  hattn::Generator g(seed);
  std::vector<std::int32_t> t(m);
  for (auto& e : t) e = std::int32_t(g.below(std::uint64_t(v)));
  for (Index i : ignored) t[i] = -100;
  return t;
}

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

}  // namespace

// ---------------------------------------------------------------------------------------- softmax

TEST_CASE("softmax forward matches the textbook formula in float and double, rows sum to 1",
          "[softmax]") {
  fe::Worst worst;
  for (auto [m, v] : {std::tuple<Index, Index>{1, 1}, {3, 7}, {5, 1000}, {2, 50257}}) {
    const auto x = test::uniform(m * v, 21, -4.0, 4.0);
    const auto ref = naive_softmax(x, m, v);

    std::vector<double> y(m * v);
    ops::softmax_forward<double>(View<double, 2>(y.data(), m, v), View<const double, 2>(x.data(), m, v));
    auto xf = cast<float>(x);
    std::vector<float> yf(m * v);
    ops::softmax_forward<float>(View<float, 2>(yf.data(), m, v), View<const float, 2>(xf.data(), m, v));
    // Float: the exps' sum accumulated in double (gamma_(v-1) in 2^-53), normalized by a double
    // reciprocal rounded to float and a float product (2u + 2^-53).
    const double sum_error = fe::gamma(double(v - 1), fe::u_double), normalize_error = 2 * fe::u + fe::u_double;

    for (Index i = 0; i < m; ++i) {
      const std::vector<double> row(xf.begin() + i * v, xf.begin() + (i + 1) * v);
      const fe::SoftmaxRow sm = fe::softmax_row(row, {}, sum_error, normalize_error);
      double sum = 0, sumf = 0;
      for (Index j = 0; j < v; ++j) {
        const Index k = i * v + j;
        REQUIRE(y[k] == Approx(ref[k]).epsilon(1e-12).margin(1e-300));
        INFO("yf[" << k << "] " << yf[k] << " vs " << sm.p[j] << ", bound " << sm.p_error[j]);
        REQUIRE(worst(yf[k], sm.p[j], sm.p_error[j]) <= 1);  // fe::softmax_row's bound
        REQUIRE(y[k] >= 0.0);
        REQUIRE(yf[k] >= 0.0f);
        sum += y[k];
        sumf += yf[k];
      }
      REQUIRE(sum == Approx(1.0).epsilon(1e-13));
      // The exps' own errors cancel in the sum of a row normalized by their sum: only the sum's and
      // the normalization's roundings remain, plus this loop's double sum.
      INFO("row " << i << " sums to " << sumf);
      REQUIRE(worst(sumf, 1.0, sum_error + normalize_error + fe::gamma(double(v - 1), fe::u_double) * sumf) <= 1);
    }
  }
  worst.print("softmax float");
}

TEST_CASE("softmax is stable for huge logits: a 1e4 offset changes nothing", "[softmax]") {
  // Multiples of 1/8 in [-4, 4]: x + 1e4 is exact in float, so the max-subtracted differences,
  // and hence the outputs, are bitwise those without the offset. Without max subtraction
  // exp(1e4) overflows in float and double.
  const Index m = 6, v = 37;
  hattn::Generator g(3);
  std::vector<float> x(m * v), shifted(m * v);
  for (Index k = 0; k < m * v; ++k) {
    x[k] = float(std::int64_t(g.below(65)) - 32) / 8.0f;
    shifted[k] = x[k] + ((k / v) % 2 ? 1e4f : -1e4f);  // both signs, per row
  }
  REQUIRE(std::isinf(std::exp(1e4f)));
  std::vector<float> y(m * v), ys(m * v);
  ops::softmax_forward<float>(View<float, 2>(y.data(), m, v), View<const float, 2>(x.data(), m, v));
  ops::softmax_forward<float>(View<float, 2>(ys.data(), m, v), View<const float, 2>(shifted.data(), m, v));
  REQUIRE(y == ys);
  for (float e : ys) REQUIRE(std::isfinite(e));

  // Double, generic values: equal up to the rounding of the shifted inputs (1e4 * 2^-53).
  const auto xd = test::uniform(m * v, 4, -3.0, 3.0);
  std::vector<double> sd(xd), yd(m * v), ysd(m * v);
  for (auto& e : sd) e += 1e4;
  ops::softmax_forward<double>(View<double, 2>(yd.data(), m, v), View<const double, 2>(xd.data(), m, v));
  ops::softmax_forward<double>(View<double, 2>(ysd.data(), m, v), View<const double, 2>(sd.data(), m, v));
  for (Index k = 0; k < m * v; ++k) REQUIRE(ysd[k] == Approx(yd[k]).epsilon(1e-10));
}

TEST_CASE("softmax handles -inf entries (masked logits) as probability zero", "[softmax]") {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> x = {1.0, -inf, 2.0, -inf}, y(4);
  ops::softmax_forward<double>(View<double, 2>(y.data(), 1, 4), View<const double, 2>(x.data(), 1, 4));
  REQUIRE(y[1] == 0.0);
  REQUIRE(y[3] == 0.0);
  REQUIRE(y[0] == Approx(1.0 / (1.0 + std::exp(1.0))).epsilon(1e-15));
  REQUIRE(y[2] == Approx(std::exp(1.0) / (1.0 + std::exp(1.0))).epsilon(1e-15));
}

TEST_CASE("softmax gradients pass central differences in double", "[softmax][gradcheck]") {
  for (auto [m, v] : {std::tuple<Index, Index>{1, 1}, {1, 2}, {3, 5}, {7, 13}, {4, 64}, {17, 9}}) {
    test::OpUnderTest op;
    op.args = {{"x", test::uniform(m * v, 30 + m, -3.0, 3.0)}};
    op.out_size = m * v;
    op.forward = [&](const std::vector<double*>& a, double* y) {
      ops::softmax_forward<double>(View<double, 2>(y, m, v), View<const double, 2>(a[0], m, v));
    };
    op.backward = [&](const std::vector<double*>&, const double* y, const double* dy,
                      const std::vector<double*>& g) {
      ops::softmax_backward<double>(View<const double, 2>(dy, m, v), View<const double, 2>(y, m, v),
                                    View<double, 2>(g[0], m, v));
    };
    test::check_op(op);
  }
}

TEST_CASE("softmax backward matches the explicit Jacobian, an empty dx is skipped", "[softmax]") {
  const Index m = 4, v = 11;
  const auto x = test::uniform(m * v, 40, -2.0, 2.0), dy = test::uniform(m * v, 41);
  const auto y = naive_softmax(x, m, v);
  std::vector<double> dx(m * v, 0.0);
  ops::softmax_backward<double>(View<const double, 2>(dy.data(), m, v), View<const double, 2>(y.data(), m, v),
                                View<double, 2>(dx.data(), m, v));
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < v; ++j) {
      double s = 0;  // sum_k dy_k * dy_k/dx_j, with dy_k/dx_j = y_k (delta_kj - y_j)
      for (Index k = 0; k < v; ++k) s += dy[i * v + k] * y[i * v + k] * ((k == j) - y[i * v + j]);
      REQUIRE(dx[i * v + j] == Approx(s).epsilon(1e-12).margin(1e-15));
    }
  REQUIRE_NOTHROW(ops::softmax_backward<double>(View<const double, 2>(dy.data(), m, v),
                                                View<const double, 2>(y.data(), m, v), {}));
}

TEST_CASE("softmax training wrapper records a node whose backward equals softmax_backward",
          "[softmax][tape]") {
  const Index m = 5, v = 23;
  auto x = cast<float>(test::uniform(m * v, 50, -3.0, 3.0));
  const auto dy = cast<float>(test::uniform(m * v, 51));
  std::vector<float> y(m * v), gy(dy), gx(m * v, 0.5f), y_direct(m * v), gx_direct(m * v, 0.5f);
  hattn::Tape tape;
  ops::softmax<float>(&tape, {View<float, 2>(y.data(), m, v), View<float, 2>(gy.data(), m, v)},
                      {View<float, 2>(x.data(), m, v), View<float, 2>(gx.data(), m, v)});
  REQUIRE(tape.size() == 1);
  ops::softmax_forward<float>(View<float, 2>(y_direct.data(), m, v), View<const float, 2>(x.data(), m, v));
  REQUIRE(y == y_direct);
  REQUIRE(gx == std::vector<float>(m * v, 0.5f));  // nothing before backward
  tape.backward();
  ops::softmax_backward<float>(View<const float, 2>(dy.data(), m, v), View<const float, 2>(y.data(), m, v),
                               View<float, 2>(gx_direct.data(), m, v));
  REQUIRE(gx == gx_direct);

  // Without a tape nothing is recorded.
  std::vector<float> y2(m * v);
  ops::softmax<float>(nullptr, {View<float, 2>(y2.data(), m, v), {}}, {View<float, 2>(x.data(), m, v), {}});
  REQUIRE(y2 == y);
  REQUIRE(tape.size() == 1);
}

TEST_CASE("softmax rejects mismatched and empty shapes, naming the op and the shapes", "[softmax][errors]") {
  std::vector<float> buf(64);
  REQUIRE_THROWS_WITH(ops::softmax_forward<float>(View<float, 2>(buf.data(), 3, 4),
                                                  View<const float, 2>(buf.data(), 3, 5)),
                      "softmax_forward: shape mismatch: y (3, 4), x (3, 5) (want y and x both (M, V))");
  REQUIRE_THROWS_WITH(ops::softmax_forward<float>(View<float, 2>(buf.data(), 0, 4),
                                                  View<const float, 2>(buf.data(), 0, 4)),
                      "softmax_forward: zero-sized dimension: x (0, 4)");
  REQUIRE_THROWS_WITH(ops::softmax_forward<float>(View<float, 2>(buf.data(), 3, 0),
                                                  View<const float, 2>(buf.data(), 3, 0)),
                      "softmax_forward: zero-sized dimension: x (3, 0)");
  REQUIRE_THROWS_WITH(ops::softmax_backward<float>(View<const float, 2>(buf.data(), 2, 4),
                                                   View<const float, 2>(buf.data(), 3, 4),
                                                   View<float, 2>(buf.data(), 3, 4)),
                      "softmax_backward: shape mismatch: y (2, 4), x (3, 4) (want y and x both (M, V))");
  REQUIRE_THROWS_WITH(ops::softmax_backward<float>(View<const float, 2>(buf.data(), 3, 4),
                                                   View<const float, 2>(buf.data(), 3, 4),
                                                   View<float, 2>(buf.data(), 4, 3)),
                      "softmax_backward: gradient shape mismatch: dx (4, 3) for y (3, 4)");
}

// ---------------------------------------------------------------------------------- cross-entropy

TEST_CASE("cross-entropy forward matches the textbook formula in float and double", "[cross_entropy]") {
  fe::Worst worst;
  for (auto [m, v] : {std::tuple<Index, Index>{1, 1}, {1, 3}, {6, 7}, {33, 100}, {3, 50257}}) {
    const auto x = test::uniform(m * v, 60 + v, -4.0, 4.0);
    auto t = make_targets(m, v, 61);
    if (m > 1) t[m - 1] = -100;  // the last position of a sequence
    if (m > 6) t[2] = t[5] = -100;
    const double ref = naive_cross_entropy(x, t, m, v);

    std::vector<double> lse(m, -7.0);
    const double loss = ops::cross_entropy_forward<double>(View<const double, 2>(x.data(), m, v),
                                                           View<const std::int32_t, 1>(t.data(), m),
                                                           View<double, 1>(lse.data(), m));
    REQUIRE(loss == Approx(ref).epsilon(1e-13));
    for (Index i = 0; i < m; ++i) {  // every row's log-sum-exp, ignored rows included
      double s = 0;
      for (Index j = 0; j < v; ++j) s += std::exp(x[i * v + j]);
      REQUIRE(lse[i] == Approx(std::log(s)).epsilon(1e-13));
    }

    const auto xf = cast<float>(x);
    std::vector<float> lsef(m);
    const float lossf = ops::cross_entropy_forward<float>(View<const float, 2>(xf.data(), m, v),
                                                          View<const std::int32_t, 1>(t.data(), m),
                                                          View<float, 1>(lsef.data(), m));
    // Float: each counted row's (max - x_t) + log(sum of float exps, summed in double) is within
    // its log-sum-exp bound (fe::softmax_row) plus the double log and add; the mean over the rows
    // is taken in double and rounded once to float (u |loss|).
    double loss_ref = 0, bound = 0, count = 0;
    for (Index i = 0; i < m; ++i) {
      if (t[i] == -100) continue;
      const std::vector<double> row(xf.begin() + i * v, xf.begin() + (i + 1) * v);
      const fe::SoftmaxRow sm = fe::softmax_row(row, {}, fe::gamma(double(v - 1), fe::u_double), 0);
      const double row_loss = sm.lse - row[std::size_t(t[i])];
      loss_ref += row_loss;
      bound += sm.lse_error + fe::gamma(3, fe::u_double) * (std::abs(sm.log_sum) + std::abs(row_loss));
      ++count;
    }
    loss_ref /= count;
    bound = bound / count + fe::gamma(double(m + 1), fe::u_double) * loss_ref + fe::u * std::abs(loss_ref);
    INFO("float loss " << lossf << " vs " << loss_ref << ", bound " << bound);
    REQUIRE(worst(lossf, loss_ref, bound) <= 1);
  }
  worst.print("cross-entropy float loss");
}

TEST_CASE("cross-entropy is stable for huge logits and ignores the logits of ignored rows",
          "[cross_entropy]") {
  const Index m = 9, v = 31;
  const auto x = test::uniform(m * v, 70, -3.0, 3.0);
  const auto t = make_targets(m, v, 71, {0, 4, 8});
  std::vector<double> shifted(x), lse(m), lse_s(m);
  for (Index k = 0; k < m * v; ++k) shifted[k] += (k / v) % 2 ? 1e4 : -1e4;
  const View<const std::int32_t, 1> tv(t.data(), m);
  const double loss = ops::cross_entropy_forward<double>(View<const double, 2>(x.data(), m, v), tv,
                                                         View<double, 1>(lse.data(), m));
  const double loss_s = ops::cross_entropy_forward<double>(View<const double, 2>(shifted.data(), m, v),
                                                           tv, View<double, 1>(lse_s.data(), m));
  REQUIRE(std::isfinite(loss_s));
  REQUIRE(loss_s == Approx(loss).epsilon(1e-10));

  // Float: quantized logits make x + 1e4 exact, so the per-row losses and the loss are bitwise equal.
  hattn::Generator g(72);
  std::vector<float> xf(m * v), sf(m * v), lsef(m);
  for (Index k = 0; k < m * v; ++k) {
    xf[k] = float(std::int64_t(g.below(65)) - 32) / 8.0f;
    sf[k] = xf[k] + 1e4f;
  }
  const float lf = ops::cross_entropy_forward<float>(View<const float, 2>(xf.data(), m, v), tv,
                                                     View<float, 1>(lsef.data(), m));
  const float lsf = ops::cross_entropy_forward<float>(View<const float, 2>(sf.data(), m, v), tv,
                                                      View<float, 1>(lsef.data(), m));
  REQUIRE(lf == lsf);

  // Rows 0, 4, 8 are ignored: changing their logits does not change the loss, bitwise.
  std::vector<double> x2(x);
  for (Index i : {0, 4, 8})
    for (Index j = 0; j < v; ++j) x2[i * v + j] = 50.0 * double(j % 3);
  const double loss2 = ops::cross_entropy_forward<double>(View<const double, 2>(x2.data(), m, v), tv,
                                                          View<double, 1>(lse.data(), m));
  REQUIRE(loss2 == loss);
}

TEST_CASE("cross-entropy gradients pass central differences in double, with ignored targets",
          "[cross_entropy][gradcheck]") {
  struct Shape {
    Index m, v;
    std::vector<Index> ignored;
  };
  for (const Shape& s : {Shape{1, 1, {}}, Shape{1, 4, {}}, Shape{3, 5, {1}}, Shape{7, 13, {0, 6}},
                         Shape{16, 32, {3, 4, 15}}, Shape{5, 100, {2}}}) {
    const Index m = s.m, v = s.v;
    const auto t = make_targets(m, v, 80 + m, s.ignored);
    const View<const std::int32_t, 1> tv(t.data(), m);
    std::vector<double> lse(m);
    test::OpUnderTest op;
    op.args = {{"logits", test::uniform(m * v, 81 + v, -3.0, 3.0)}};
    op.out_size = 1;
    op.forward = [&](const std::vector<double*>& a, double* out) {
      out[0] = ops::cross_entropy_forward<double>(View<const double, 2>(a[0], m, v), tv,
                                                  View<double, 1>(lse.data(), m));
    };
    op.backward = [&](const std::vector<double*>& a, const double*, const double* dout,
                      const std::vector<double*>& g) {
      // lse of these logits, whatever forward ran last.
      ops::cross_entropy_forward<double>(View<const double, 2>(a[0], m, v), tv, View<double, 1>(lse.data(), m));
      ops::cross_entropy_backward<double>(dout[0], View<const double, 2>(a[0], m, v), tv,
                                          View<const double, 1>(lse.data(), m), View<double, 2>(g[0], m, v));
    };
    test::check_op(op);
  }
}

TEST_CASE("cross-entropy backward matches (softmax - onehot) * dloss / count, ignored rows get exactly nothing",
          "[cross_entropy]") {
  const Index m = 8, v = 19;
  const auto x = test::uniform(m * v, 90, -3.0, 3.0);
  const auto t = make_targets(m, v, 91, {1, 5, 7});
  const auto p = naive_softmax(x, m, v);
  std::vector<double> lse(m);
  const View<const std::int32_t, 1> tv(t.data(), m);
  ops::cross_entropy_forward<double>(View<const double, 2>(x.data(), m, v), tv, View<double, 1>(lse.data(), m));

  const double dloss = 1.75;
  std::vector<double> g(m * v, 0.0), filled = test::uniform(m * v, 92), prefill(filled);
  ops::cross_entropy_backward<double>(dloss, View<const double, 2>(x.data(), m, v), tv,
                                      View<const double, 1>(lse.data(), m), View<double, 2>(g.data(), m, v));
  ops::cross_entropy_backward<double>(dloss, View<const double, 2>(x.data(), m, v), tv,
                                      View<const double, 1>(lse.data(), m), View<double, 2>(filled.data(), m, v));
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < v; ++j) {
      const Index k = i * v + j;
      if (t[i] == -100) {
        REQUIRE(g[k] == 0.0);
        REQUIRE(filled[k] == prefill[k]);  // bitwise untouched
      } else {
        REQUIRE(g[k] == Approx(dloss * (p[k] - (j == t[i])) / 5.0).epsilon(1e-12).margin(1e-16));
      }
    }
  // An empty gradient is skipped after validation.
  REQUIRE_NOTHROW(ops::cross_entropy_backward<double>(dloss, View<const double, 2>(x.data(), m, v), tv,
                                                      View<const double, 1>(lse.data(), m), {}));
}

TEST_CASE("cross-entropy training wrapper writes the loss and its node reads dloss from loss.grad[0]",
          "[cross_entropy][tape]") {
  const Index m = 6, v = 29;
  auto x = cast<float>(test::uniform(m * v, 100, -3.0, 3.0));
  const auto t = make_targets(m, v, 101, {5});
  const View<const std::int32_t, 1> tv(t.data(), m);
  std::vector<float> gx(m * v, 0.0f), lse(m), loss_value(1, -1.0f), loss_grad(1, 0.0f);
  hattn::Tape tape;
  const float loss = ops::cross_entropy<float>(
      &tape, {View<float, 1>(loss_value.data(), 1), View<float, 1>(loss_grad.data(), 1)},
      {View<float, 2>(x.data(), m, v), View<float, 2>(gx.data(), m, v)}, tv, View<float, 1>(lse.data(), m));
  REQUIRE(tape.size() == 1);
  std::vector<float> lse_direct(m);
  const float direct = ops::cross_entropy_forward<float>(View<const float, 2>(x.data(), m, v), tv,
                                                         View<float, 1>(lse_direct.data(), m));
  REQUIRE(loss == direct);
  REQUIRE(loss_value[0] == direct);
  REQUIRE(lse == lse_direct);

  // loss.grad[0] is read when the tape replays, not when the node is recorded.
  loss_grad[0] = 2.5f;
  tape.backward();
  std::vector<float> expect(m * v, 0.0f);
  ops::cross_entropy_backward<float>(2.5f, View<const float, 2>(x.data(), m, v), tv,
                                     View<const float, 1>(lse.data(), m), View<float, 2>(expect.data(), m, v));
  REQUIRE(gx == expect);
  bool any_nonzero = false;
  for (float e : gx) any_nonzero |= e != 0.0f;
  REQUIRE(any_nonzero);

  // A zero incoming gradient adds nothing.
  loss_grad[0] = 0.0f;
  tape.backward();
  REQUIRE(gx == expect);

  // The loss must be one element, with a one-element gradient when recorded.
  std::vector<float> two(2);
  REQUIRE_THROWS_WITH(
      ops::cross_entropy<float>(&tape, {View<float, 1>(two.data(), 2), View<float, 1>(two.data(), 2)},
                                {View<float, 2>(x.data(), m, v), {}}, tv, View<float, 1>(lse.data(), m)),
      "cross_entropy: the loss must be one element with a one-element gradient when recorded: "
      "value (2), grad (2)");
  REQUIRE_THROWS_WITH(
      ops::cross_entropy<float>(&tape, {View<float, 1>(two.data(), 1), {}}, {View<float, 2>(x.data(), m, v), {}},
                                tv, View<float, 1>(lse.data(), m)),
      "cross_entropy: the loss must be one element with a one-element gradient when recorded: "
      "value (1), grad none");
  REQUIRE(tape.size() == 1);
  // Inference-style evaluation needs no gradient and records nothing.
  REQUIRE(ops::cross_entropy<float>(nullptr, {View<float, 1>(two.data(), 1), {}},
                                    {View<float, 2>(x.data(), m, v), {}}, tv,
                                    View<float, 1>(lse.data(), m)) == direct);
  REQUIRE(tape.size() == 1);
}

TEST_CASE("softmax and cross-entropy are bitwise identical with 1 and 2 threads", "[softmax][cross_entropy][threads]") {
  const Index m = 512, v = 1000;
  hattn::Generator g(110);
  std::vector<float> x(m * v), dy(m * v);
  for (auto* buf : {&x, &dy})
    for (auto& e : *buf) e = float(g.uniform(-5, 5));
  auto t = make_targets(m, v, 111);
  for (Index i = 0; i < m; i += 64) t[i] = -100;
  const View<const std::int32_t, 1> tv(t.data(), m);
  auto run = [&] {
    std::vector<float> y(m * v), dx(m * v, 0.25f), lse(m), dlogits(m * v, -0.5f);
    ops::softmax_forward<float>(View<float, 2>(y.data(), m, v), View<const float, 2>(x.data(), m, v));
    ops::softmax_backward<float>(View<const float, 2>(dy.data(), m, v), View<const float, 2>(y.data(), m, v),
                                 View<float, 2>(dx.data(), m, v));
    const float loss = ops::cross_entropy_forward<float>(View<const float, 2>(x.data(), m, v), tv,
                                                         View<float, 1>(lse.data(), m));
    ops::cross_entropy_backward<float>(1.0f, View<const float, 2>(x.data(), m, v), tv,
                                       View<const float, 1>(lse.data(), m), View<float, 2>(dlogits.data(), m, v));
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), lse.begin(), lse.end());
    y.insert(y.end(), dlogits.begin(), dlogits.end());
    y.push_back(loss);
    return y;
  };
  const auto one = test::with_threads(1, run);
  const auto two = test::with_threads(2, run);
  REQUIRE(one == two);
}

TEST_CASE("cross-entropy validates shapes and targets first, with exact messages, computing nothing",
          "[cross_entropy][errors]") {
  const Index m = 3, v = 5;
  std::vector<float> x(m * v, 0.5f), lse(m, 42.0f), g(m * v, 7.0f);
  const View<const float, 2> xv(x.data(), m, v);
  const View<float, 1> lv(lse.data(), m);
  auto fwd = [&](std::vector<std::int32_t> t) {
    return ops::cross_entropy_forward<float>(xv, View<const std::int32_t, 1>(t.data(), Index(t.size())), lv);
  };
  auto bwd = [&](std::vector<std::int32_t> t) {
    ops::cross_entropy_backward<float>(1.0f, xv, View<const std::int32_t, 1>(t.data(), Index(t.size())),
                                       View<const float, 1>(lse.data(), m), View<float, 2>(g.data(), m, v));
  };

  REQUIRE_THROWS_WITH(fwd({0, -1, 2}),
                      "cross_entropy_forward: target -1 at row 1 is outside [0, 5) and is not the ignore index -100");
  REQUIRE_THROWS_WITH(fwd({0, 1, 5}),
                      "cross_entropy_forward: target 5 at row 2 is outside [0, 5) and is not the ignore index -100");
  REQUIRE_THROWS_WITH(fwd({-101, 1, 2}),
                      "cross_entropy_forward: target -101 at row 0 is outside [0, 5) and is not the ignore index -100");
  REQUIRE_THROWS_WITH(fwd({-100, -100, -100}),
                      "cross_entropy_forward: every target is the ignore index -100 (3 rows), so the mean "
                      "loss over no targets is undefined");
  REQUIRE_THROWS_WITH(fwd({0, 1}),
                      "cross_entropy_forward: shape mismatch: logits (3, 5), targets (2), lse (3) "
                      "(want logits (M, V), targets (M), lse (M))");
  std::vector<std::int32_t> t_ok = {0, 1, 2};
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward<float>(xv, View<const std::int32_t, 1>(t_ok.data(), m),
                                                        View<float, 1>(lse.data(), 2)),
                      "cross_entropy_forward: shape mismatch: logits (3, 5), targets (3), lse (2) "
                      "(want logits (M, V), targets (M), lse (M))");
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward<float>(View<const float, 2>(x.data(), 0, v),
                                                        View<const std::int32_t, 1>(t_ok.data(), 0),
                                                        View<float, 1>(lse.data(), 0)),
                      "cross_entropy_forward: zero-sized dimension: logits (0, 5)");
  REQUIRE_THROWS_WITH(ops::cross_entropy_forward<float>(View<const float, 2>(x.data(), m, 0),
                                                        View<const std::int32_t, 1>(t_ok.data(), m), lv),
                      "cross_entropy_forward: zero-sized dimension: logits (3, 0)");
  REQUIRE(lse == std::vector<float>(m, 42.0f));  // nothing was written by the failed calls

  REQUIRE_THROWS_WITH(bwd({0, 7, 2}),
                      "cross_entropy_backward: target 7 at row 1 is outside [0, 5) and is not the ignore index -100");
  REQUIRE_THROWS_WITH(bwd({-100, -100, -100}),
                      "cross_entropy_backward: every target is the ignore index -100 (3 rows), so the mean "
                      "loss over no targets is undefined");
  REQUIRE_THROWS_WITH(ops::cross_entropy_backward<float>(1.0f, xv, View<const std::int32_t, 1>(t_ok.data(), m),
                                                         View<const float, 1>(lse.data(), m),
                                                         View<float, 2>(g.data(), m, v - 1)),
                      "cross_entropy_backward: shape mismatch: logits (3, 5), targets (3), lse (3), dlogits "
                      "(3, 4) (want logits (M, V), targets (M), lse (M), dlogits (M, V) or none)");
  REQUIRE(g == std::vector<float>(m * v, 7.0f));
}

TEST_CASE("cross-entropy backward in place equals the backward into a zeroed gradient, bitwise",
          "[cross_entropy]") {
  const hattn::Index m = 37, v = 301;
  std::vector<float> logits(m * v);
  hattn::Generator g(21);
  for (auto& x : logits) x = float(g.uniform(-4, 4));
  std::vector<std::int32_t> targets(m);
  for (hattn::Index i = 0; i < m; ++i) targets[i] = i % 5 == 3 ? -100 : std::int32_t(g.below(v));
  std::vector<float> lse(m), grads(m * v, 0.0f);
  const hattn::View<const float, 2> x(logits.data(), m, v);
  const hattn::View<const std::int32_t, 1> t(targets.data(), m);
  hattn::ops::cross_entropy_forward<float>(x, t, hattn::View<float, 1>(lse.data(), m));
  hattn::ops::cross_entropy_backward<float>(0.75f, x, t, hattn::View<const float, 1>(lse.data(), m),
                                            hattn::View<float, 2>(grads.data(), m, v));
  std::vector<float> in_place = logits;
  hattn::ops::cross_entropy_backward_in_place<float>(0.75f, hattn::View<float, 2>(in_place.data(), m, v), t,
                                                     hattn::View<const float, 1>(lse.data(), m));
  REQUIRE(in_place == grads);
}
