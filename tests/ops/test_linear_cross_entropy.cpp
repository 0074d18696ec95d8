#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "hattn/ops/cross_entropy.hpp"
#include "hattn/ops/linear.hpp"
#include "hattn/ops/linear_cross_entropy.hpp"
#include "support/float_error.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::View;
namespace ops = hattn::ops;
namespace test = hattn::test;
namespace fe = hattn::test::fe;

namespace {

// Targets in [0, n), every `ignore_every`-th row (from row 1) set to -100.
std::vector<std::int32_t> make_targets(Index m, Index n, std::uint64_t seed, Index ignore_every = 0) {
  hattn::Generator g(seed);
  std::vector<std::int32_t> t(m);
  for (Index i = 0; i < m; ++i)
    t[i] = ignore_every > 0 && i % ignore_every == 1 ? -100 : std::int32_t(g.below(std::uint64_t(n)));
  return t;
}

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

// Inputs of a (M, K) x (N, K) head in T, with their gradients from a fused backward.
template <class T>
struct Head {
  Index m, k, n;
  std::vector<T> x, w, b;
  std::vector<std::int32_t> t;
  Head(Index m_, Index k_, Index n_, std::uint64_t seed)
      : m(m_), k(k_), n(n_), x(cast<T>(test::uniform(m * k, seed, -2, 2))),
        w(cast<T>(test::uniform(n * k, seed + 1, -1, 1))), b(cast<T>(test::uniform(n, seed + 2))),
        t(make_targets(m, n, seed + 3, 4)) {}
  View<const T, 2> xv() const { return {x.data(), m, k}; }
  View<const T, 2> wv() const { return {w.data(), n, k}; }
  View<const T, 1> bv() const { return {b.data(), n}; }
  View<const std::int32_t, 1> tv() const { return {t.data(), m}; }

  struct Result {
    T loss;
    std::vector<T> lse, dx, dw, db;
  };
  // Fused forward + backward with dloss, the logits stored (scratch = false) or recomputed.
  Result fused(Index chunk, bool scratch, T dloss) const {
    Result r{T(0), std::vector<T>(m), std::vector<T>(m * k, T(0)), std::vector<T>(n * k, T(0)),
             std::vector<T>(n, T(0))};
    std::vector<T> logits((scratch ? std::min(m, chunk) : m) * n);
    const View<T, 2> lv(logits.data(), Index(logits.size()) / n, n);
    r.loss = ops::linear_cross_entropy_forward<T>(xv(), wv(), bv(), tv(), View<T, 1>(r.lse.data(), m), lv, chunk);
    ops::linear_cross_entropy_backward<T>(dloss, xv(), wv(), bv(), tv(), View<const T, 1>(r.lse.data(), m), lv,
                                          chunk, View<T, 2>(r.dx.data(), m, k), View<T, 2>(r.dw.data(), n, k),
                                          View<T, 1>(r.db.data(), n));
    return r;
  }
  // The unfused composition: linear_forward, cross_entropy_forward, then their backwards.
  Result unfused(T dloss) const {
    Result r{T(0), std::vector<T>(m), std::vector<T>(m * k, T(0)), std::vector<T>(n * k, T(0)),
             std::vector<T>(n, T(0))};
    std::vector<T> y(m * n), dy(m * n, T(0));
    ops::linear_forward<T>(View<T, 2>(y.data(), m, n), xv(), wv(), bv());
    r.loss = ops::cross_entropy_forward<T>(View<const T, 2>(y.data(), m, n), tv(), View<T, 1>(r.lse.data(), m));
    ops::cross_entropy_backward<T>(dloss, View<const T, 2>(y.data(), m, n), tv(),
                                   View<const T, 1>(r.lse.data(), m), View<T, 2>(dy.data(), m, n));
    ops::linear_backward<T>(View<const T, 2>(dy.data(), m, n), xv(), wv(), View<T, 2>(r.dx.data(), m, k),
                            View<T, 2>(r.dw.data(), n, k), View<T, 1>(r.db.data(), n));
    return r;
  }
};

// The exact loss and gradients of a float head, in double, with bounds on a float evaluation's
// error that hold for any GEMM kernel (tests/support/float_error.hpp), fused or not:
//   logits z = x W^T + b: GEMM of length k plus the bias, within gamma_(k+1) (sum |x w| + |b|);
//   lse (double sum of the float exps, stored in float): fe::softmax_row's bound plus u |lse|;
//   loss: the mean of lse - z_t over counted rows, each within its lse bound plus z_t's, rounded
//     once to float;
//   G = scale (exp(z - lse) - onehot), scale = dloss / count in float: p_j within
//     p_j (z_j's and lse's bounds + u |z_j - lse| + 2u) + FLT_MIN, then the rounded scale, the
//     product and the target's subtraction;
//   dx = G W (length n), dW = G^T x and db = column sums of G (length m, chunk after chunk):
//     sum |G err| |operand| + gamma_len sum (|G| + |G err|) |operand|.
struct Exact {
  double loss = 0, loss_error = 0;
  std::vector<double> dx, dx_error, dw, dw_error, db, db_error;
};

Exact exact_head(const Head<float>& h, float dloss) {
  const Index m = h.m, k = h.k, n = h.n;
  const double u = fe::u, flt_min = std::numeric_limits<float>::min();
  Index count = 0;
  for (std::int32_t t : h.t) count += t != -100;
  const double scale = double(dloss) / double(count);
  std::vector<double> g(m * n, 0.0), g_error(m * n, 0.0), z(n), z_error(n);
  Exact e;
  for (Index i = 0; i < m; ++i) {
    for (Index j = 0; j < n; ++j) {
      z[j] = double(h.b[j]);
      for (Index c = 0; c < k; ++c) z[j] += double(h.x[i * k + c]) * double(h.w[j * k + c]);
      z_error[j] = fe::dot_bound(k, fe::abs_dot(&h.x[i * k], 1, &h.w[j * k], 1, k) + std::abs(double(h.b[j])), 1);
    }
    const std::int32_t t = h.t[i];
    if (t == -100) continue;  // G = 0 exactly
    const fe::SoftmaxRow sm = fe::softmax_row(z, z_error, fe::gamma(double(n - 1), fe::u_double), 0);
    const double lse_error = sm.lse_error + u * std::abs(sm.lse) + fe::gamma(2, fe::u_double) * std::abs(sm.lse);
    e.loss += sm.lse - z[t];
    e.loss_error += lse_error + z_error[t];
    for (Index j = 0; j < n; ++j) {
      const double p = sm.p[j];
      const double p_error = p * (z_error[j] + lse_error + u * std::abs(z[j] - sm.lse) + 2 * u) + flt_min;
      g[i * n + j] = scale * (p - (j == t));
      g_error[i * n + j] = scale * (p_error + (2 * u + fe::u_double) * p);  // rounded scale, product
    }
    g_error[i * n + t] += scale * (u + fe::u_double) + u * std::abs(g[i * n + t]);  // g_t -= scale
  }
  e.loss /= double(count);
  e.loss_error = e.loss_error / double(count) + fe::gamma(double(m + 1), fe::u_double) * e.loss + u * e.loss;
  // A sum of `len` terms a_l b_l, each a_l within a_error_l: its exact value and bound.
  const auto sum_bound = [](Index len, auto a, auto a_error, auto b, double& value, double& error) {
    double err = 0, mag = 0;
    value = 0;
    for (Index l = 0; l < len; ++l) {
      value += a(l) * b(l);
      err += a_error(l) * std::abs(b(l));
      mag += (std::abs(a(l)) + a_error(l)) * std::abs(b(l));
    }
    error = err + fe::gamma(double(len)) * mag;
  };
  e.dx.resize(m * k), e.dx_error.resize(m * k), e.dw.resize(n * k), e.dw_error.resize(n * k);
  e.db.resize(n), e.db_error.resize(n);
  for (Index i = 0; i < m; ++i)
    for (Index c = 0; c < k; ++c)
      sum_bound(n, [&](Index j) { return g[i * n + j]; }, [&](Index j) { return g_error[i * n + j]; },
                [&](Index j) { return double(h.w[j * k + c]); }, e.dx[i * k + c], e.dx_error[i * k + c]);
  for (Index j = 0; j < n; ++j) {
    for (Index c = 0; c < k; ++c)
      sum_bound(m, [&](Index i) { return g[i * n + j]; }, [&](Index i) { return g_error[i * n + j]; },
                [&](Index i) { return double(h.x[i * k + c]); }, e.dw[j * k + c], e.dw_error[j * k + c]);
    sum_bound(m, [&](Index i) { return g[i * n + j]; }, [&](Index i) { return g_error[i * n + j]; },
              [](Index) { return 1.0; }, e.db[j], e.db_error[j]);
  }
  return e;
}

// Every entry of `got` within its bound of the exact value; returns the worst error / bound.
double require_within(const char* what, const std::vector<float>& got, const std::vector<double>& want,
                      const std::vector<double>& bound) {
  REQUIRE(got.size() == want.size());
  fe::Worst worst;
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(what << "[" << i << "] " << got[i] << " vs " << want[i] << ", bound " << bound[i]);
    REQUIRE(worst(got[i], want[i], bound[i]) <= 1);
  }
  return worst.ratio;
}

}  // namespace

TEST_CASE("linear_cross_entropy_chunk: multiples of the GEMM row unit, about 5 x 2^23 logits, n only",
          "[linear_cross_entropy]") {
  REQUIRE(ops::linear_cross_entropy_chunk(50257) == 768);    // GPT-2 vocabulary: 5.3 chunks of 4096 rows
  REQUIRE(ops::linear_cross_entropy_chunk(8192) == 5088);
  REQUIRE(ops::linear_cross_entropy_chunk(256) == 163776);
  REQUIRE(ops::linear_cross_entropy_chunk(1 << 25) == 96);   // never fewer than one row unit
  for (Index n : {1, 7, 1000, 50257, 300000}) {
    const Index c = ops::linear_cross_entropy_chunk(n);
    REQUIRE(c % hattn::detail::gemm_row_unit == 0);
    REQUIRE(c >= hattn::detail::gemm_row_unit);
    REQUIRE((c * n <= ops::linear_cross_entropy_chunk_elements || c == hattn::detail::gemm_row_unit));
  }
}

// OpenBLAS computes a row of a product the same way whenever its position within the call is the
// same modulo the kernel's unroll: chunks that are multiples of gemm_row_unit keep every row's bits.
TEST_CASE("linear_cross_entropy forward is bitwise linear_forward then cross_entropy_forward, "
          "stored or recomputed, for chunks of whole row units",
          "[linear_cross_entropy]") {
  const Head<float> h(203, 24, 301, 5);
  const auto ref = h.unfused(1.0f);
  std::vector<float> y(h.m * h.n), p(h.m * h.n);
  ops::linear_forward<float>(View<float, 2>(y.data(), h.m, h.n), h.xv(), h.wv(), h.bv());
  ops::softmax_forward<float>(View<float, 2>(p.data(), h.m, h.n), View<const float, 2>(y.data(), h.m, h.n));
  for (Index chunk : {96, 192, 1000}) {
    for (bool scratch : {false, true}) {
      INFO("chunk " << chunk << (scratch ? ", recomputed" : ", stored"));
      std::vector<float> lse(h.m), logits((scratch ? std::min(h.m, chunk) : h.m) * h.n);
      const float loss = ops::linear_cross_entropy_forward<float>(
          h.xv(), h.wv(), h.bv(), h.tv(), View<float, 1>(lse.data(), h.m),
          View<float, 2>(logits.data(), Index(logits.size()) / h.n, h.n), chunk);
      REQUIRE(loss == ref.loss);
      REQUIRE(lse == ref.lse);
      if (!scratch) REQUIRE(logits == p);  // the stored logits are replaced by softmax_forward's output
    }
  }
}

TEST_CASE("linear_cross_entropy backward: recomputed equals stored bitwise for any chunk, both match "
          "the unfused composition (the loss bitwise for chunks of whole row units)",
          "[linear_cross_entropy]") {
  fe::Worst worst;
  for (auto [m, k, n, chunk] : {std::tuple<Index, Index, Index, Index>{203, 24, 301, 96},
                                {203, 24, 301, 7}, {500, 40, 1000, 192}, {9, 3, 5, 1000}}) {
    INFO("m " << m << ", k " << k << ", n " << n << ", chunk " << chunk);
    const Head<float> h(m, k, n, 40 + m);
    const auto stored = h.fused(chunk, false, 0.75f);
    const auto recomputed = h.fused(chunk, true, 0.75f);
    REQUIRE(recomputed.loss == stored.loss);
    REQUIRE(recomputed.dx == stored.dx);
    REQUIRE(recomputed.dw == stored.dw);
    REQUIRE(recomputed.db == stored.db);
    const auto ref = h.unfused(0.75f);
    // The same logits, bit for bit, so the same loss. The gradients differ in rounding: the fused
    // softmax is exp(y - max) / sum, the unfused backward's exp(y - lse).
    if (chunk % hattn::detail::gemm_row_unit == 0) REQUIRE(stored.loss == ref.loss);
    // Fused and unfused, each within the head's float error bound of the exact values (exact_head).
    const Exact exact = exact_head(h, 0.75f);
    for (const auto* r : {&stored, &ref}) {
      INFO((r == &stored ? "fused" : "unfused"));
      INFO("loss " << r->loss << " vs " << exact.loss << ", bound " << exact.loss_error);
      REQUIRE(worst(r->loss, exact.loss, exact.loss_error) <= 1);
      worst.ratio = std::max({worst.ratio, require_within("dx", r->dx, exact.dx, exact.dx_error),
                              require_within("dW", r->dw, exact.dw, exact.dw_error),
                              require_within("db", r->db, exact.db, exact.db_error)});
    }
  }
  worst.print("linear_cross_entropy float, fused and unfused");
}

TEST_CASE("linear_cross_entropy gradients pass central differences in double, with ignored targets, "
          "stored and recomputed",
          "[linear_cross_entropy][gradcheck]") {
  for (auto [m, k, n, chunk, scratch] :
       {std::tuple<Index, Index, Index, Index, bool>{1, 1, 1, 1, false}, {7, 5, 13, 3, true},
        {7, 5, 13, 3, false}, {12, 4, 9, 5, true}, {6, 3, 11, 100, true}}) {
    INFO("m " << m << ", chunk " << chunk << (scratch ? ", recomputed" : ", stored"));
    const auto t = make_targets(m, n, 60 + m, 3);
    const View<const std::int32_t, 1> tv(t.data(), m);
    std::vector<double> lse(m), logits((scratch ? std::min(m, chunk) : m) * n);
    const View<double, 2> lv(logits.data(), Index(logits.size()) / n, n);
    test::OpUnderTest op;
    op.args = {{"x", test::uniform(m * k, 61, -2, 2)}, {"W", test::uniform(n * k, 62)},
               {"b", test::uniform(n, 63)}};
    op.out_size = 1;
    const auto forward = [&](const std::vector<double*>& a) {
      return ops::linear_cross_entropy_forward<double>(View<const double, 2>(a[0], m, k),
                                                       View<const double, 2>(a[1], n, k),
                                                       View<const double, 1>(a[2], n), tv,
                                                       View<double, 1>(lse.data(), m), lv, chunk);
    };
    op.forward = [&](const std::vector<double*>& a, double* out) { out[0] = forward(a); };
    op.backward = [&](const std::vector<double*>& a, const double*, const double* dout,
                      const std::vector<double*>& g) {
      forward(a);  // lse and stored logits of these arguments, whatever forward ran last
      ops::linear_cross_entropy_backward<double>(
          dout[0], View<const double, 2>(a[0], m, k), View<const double, 2>(a[1], n, k),
          View<const double, 1>(a[2], n), tv, View<const double, 1>(lse.data(), m), lv, chunk,
          View<double, 2>(g[0], m, k), View<double, 2>(g[1], n, k), View<double, 1>(g[2], n));
    };
    test::check_op(op);
  }
}

TEST_CASE("linear_cross_entropy is bitwise identical with 1 and 2 threads", "[linear_cross_entropy][threads]") {
  const Head<float> h(1000, 64, 2000, 11);
  const auto one = test::with_threads(1, [&] { return h.fused(288, true, 1.0f); });
  const auto two = test::with_threads(2, [&] { return h.fused(288, true, 1.0f); });
  REQUIRE(one.loss == two.loss);
  REQUIRE(one.dx == two.dx);
  REQUIRE(one.dw == two.dw);
  REQUIRE(one.db == two.db);
}

TEST_CASE("linear_cross_entropy training wrapper records a node that reads dloss from loss.grad[0]",
          "[linear_cross_entropy][tape]") {
  const Head<float> h(50, 8, 30, 70);
  std::vector<float> x = h.x, w = h.w, b = h.b;
  std::vector<float> dx(x.size(), 0.0f), dw(w.size(), 0.0f), db(b.size(), 0.0f);
  std::vector<float> lse(h.m), logits(16 * h.n), loss_value(1), loss_grad(1, 0.0f);
  hattn::Tape tape;
  const float loss = ops::linear_cross_entropy<float>(
      &tape, {View<float, 1>(loss_value.data(), 1), View<float, 1>(loss_grad.data(), 1)},
      {View<float, 2>(x.data(), h.m, h.k), View<float, 2>(dx.data(), h.m, h.k)},
      {View<float, 2>(w.data(), h.n, h.k), View<float, 2>(dw.data(), h.n, h.k)},
      {View<float, 1>(b.data(), h.n), View<float, 1>(db.data(), h.n)}, h.tv(), View<float, 1>(lse.data(), h.m),
      View<float, 2>(logits.data(), 16, h.n), 16);
  REQUIRE(tape.size() == 1);
  const auto expect = h.fused(16, true, 2.5f);
  REQUIRE(loss == expect.loss);
  REQUIRE(loss_value[0] == expect.loss);
  loss_grad[0] = 2.5f;  // read when the tape replays, not when the node is recorded
  tape.backward();
  REQUIRE(dx == expect.dx);
  REQUIRE(dw == expect.dw);
  REQUIRE(db == expect.db);
  REQUIRE(std::any_of(dw.begin(), dw.end(), [](float e) { return e != 0.0f; }));

  REQUIRE_THROWS_WITH(
      ops::linear_cross_entropy<float>(&tape, {View<float, 1>(loss_value.data(), 1), {}},
                                       {View<float, 2>(x.data(), h.m, h.k), {}}, {View<float, 2>(w.data(), h.n, h.k), {}},
                                       {View<float, 1>(b.data(), h.n), {}}, h.tv(), View<float, 1>(lse.data(), h.m),
                                       View<float, 2>(logits.data(), 16, h.n), 16),
      "linear_cross_entropy: the loss must be one element with a one-element gradient when recorded: "
      "value (1), grad none");
  REQUIRE(tape.size() == 1);
}

TEST_CASE("linear_cross_entropy validates shapes, chunk and targets first, with exact messages",
          "[linear_cross_entropy][errors]") {
  const Head<float> h(5, 3, 4, 90);
  std::vector<float> lse(h.m, 42.0f), logits(h.m * h.n, 7.0f);
  auto fwd = [&](std::vector<std::int32_t> t, Index logit_rows, Index chunk) {
    return ops::linear_cross_entropy_forward<float>(
        h.xv(), h.wv(), h.bv(), View<const std::int32_t, 1>(t.data(), Index(t.size())),
        View<float, 1>(lse.data(), h.m), View<float, 2>(logits.data(), logit_rows, h.n), chunk);
  };
  const std::vector<std::int32_t> ok = {0, 1, 2, 3, -100};
  REQUIRE_THROWS_WITH(fwd({0, 1, 4, 3, 0}, 5, 2),
                      "linear_cross_entropy_forward: target 4 at row 2 is outside [0, 4) and is not the "
                      "ignore index -100");
  REQUIRE_THROWS_WITH(fwd({-100, -100, -100, -100, -100}, 5, 2),
                      "linear_cross_entropy_forward: every target is the ignore index -100 (5 rows), so the "
                      "mean loss over no targets is undefined");
  REQUIRE_THROWS_WITH(fwd(ok, 5, 0), "linear_cross_entropy_forward: chunk rows must be positive, got 0");
  REQUIRE_THROWS_WITH(fwd(ok, 3, 2),
                      "linear_cross_entropy_forward: shape mismatch: x (5, 3), W (4, 3), b (4), targets (5), "
                      "lse (5), logits (3, 4) (want x (M, K), W (N, K), b (N) or none, targets (M), lse (M), "
                      "logits (M, N) or (min(M, 2), N))");
  REQUIRE_THROWS_WITH(fwd({0, 1, 2}, 5, 2),
                      "linear_cross_entropy_forward: shape mismatch: x (5, 3), W (4, 3), b (4), targets (3), "
                      "lse (5), logits (5, 4) (want x (M, K), W (N, K), b (N) or none, targets (M), lse (M), "
                      "logits (M, N) or (min(M, 2), N))");
  REQUIRE(lse == std::vector<float>(h.m, 42.0f));  // nothing was written by the failed calls
  REQUIRE(logits == std::vector<float>(h.m * h.n, 7.0f));

  std::vector<float> dx(h.m * h.k), dw((h.n + 1) * h.k);
  REQUIRE_THROWS_WITH(ops::linear_cross_entropy_backward<float>(
                          1.0f, h.xv(), h.wv(), h.bv(), View<const std::int32_t, 1>(ok.data(), h.m),
                          View<const float, 1>(lse.data(), h.m), View<float, 2>(logits.data(), h.m, h.n), 2,
                          View<float, 2>(dx.data(), h.m, h.k), View<float, 2>(dw.data(), h.n + 1, h.k), {}),
                      "linear_cross_entropy_backward: gradient shape mismatch: dx (5, 3) for x (5, 3), dW "
                      "(5, 3) for W (4, 3), db none");
}
