#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/ops/embedding.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::View;
namespace ops = hattn::ops;
namespace test = hattn::test;

namespace {

// Token ids in [0, vocab) from a seeded generator.
std::vector<std::int32_t> random_ids(std::size_t n, Index vocab, std::uint64_t seed) {
  hattn::Generator g(seed);
  std::vector<std::int32_t> ids(n);
  for (auto& id : ids) id = std::int32_t(g.below(std::uint64_t(vocab)));
  return ids;
}

// The closed form written as exp(-(2i/d) ln 10000), independent of the library's pow.
double sinusoid(Index k, Index col, Index d) {
  const Index i = col / 2;
  const double angle = double(k) * std::exp(-double(2 * i) / double(d) * std::log(10000.0));
  return col % 2 == 0 ? std::sin(angle) : std::cos(angle);
}

}  // namespace

TEST_CASE("sinusoid table matches the closed form and writes every entry", "[embedding]") {
  const Index S = 37, d = 18;
  std::vector<double> p(S * d, std::numeric_limits<double>::quiet_NaN());
  ops::sinusoid_table<double>(View<double, 2>(p.data(), S, d));
  for (Index k = 0; k < S; ++k)
    for (Index j = 0; j < d; ++j) REQUIRE(p[k * d + j] == Approx(sinusoid(k, j, d)).margin(1e-12));

  // Hand-checked points: row 0 is (0, 1, 0, 1, ...); column pair 0 has frequency 1.
  for (Index j = 0; j < d; ++j) REQUIRE(p[j] == (j % 2 == 0 ? 0.0 : 1.0));
  REQUIRE(p[1 * d + 0] == Approx(std::sin(1.0)).epsilon(1e-15));
  REQUIRE(p[1 * d + 1] == Approx(std::cos(1.0)).epsilon(1e-15));
  REQUIRE(p[5 * d + 0] == Approx(std::sin(5.0)).epsilon(1e-15));
  // (k, i) = (36, 4): angle 36 / 10000^(8/18).
  REQUIRE(p[36 * d + 8] == Approx(std::sin(36.0 / std::pow(10000.0, 8.0 / 18.0))).epsilon(1e-14));
  REQUIRE(p[36 * d + 9] == Approx(std::cos(36.0 / std::pow(10000.0, 8.0 / 18.0))).epsilon(1e-14));
  // (k, i) = (20, 8), the last pair: angle 20 / 10000^(16/18).
  REQUIRE(p[20 * d + 16] == Approx(std::sin(20.0 / std::pow(10000.0, 16.0 / 18.0))).epsilon(1e-14));
  REQUIRE(p[20 * d + 17] == Approx(std::cos(20.0 / std::pow(10000.0, 16.0 / 18.0))).epsilon(1e-14));

  // The float table is the double one rounded: within half a float ulp of the closed form.
  std::vector<float> pf(S * d, std::numeric_limits<float>::quiet_NaN());
  ops::sinusoid_table<float>(View<float, 2>(pf.data(), S, d));
  for (Index i = 0; i < S * d; ++i) {
    const double ref = sinusoid(i / d, i % d, d);
    const double half_ulp = ref == 0 ? 0.0 : 0.5 * std::ldexp(1.0, std::ilogb(ref) - 23);  // ilogb(0) is INT_MIN
    REQUIRE(std::abs(double(pf[i]) - ref) <= half_ulp + 1e-13);
  }
}

TEST_CASE("sinusoid table rejects odd and empty widths", "[embedding][errors]") {
  std::vector<float> buf(64, 7.f);
  REQUIRE_THROWS_WITH(ops::sinusoid_table<float>(View<float, 2>(buf.data(), 4, 5)),
                      "sinusoid_table: d must be even (columns 2i and 2i+1 hold sin and cos), got P (4, 5)");
  REQUIRE_THROWS_WITH(ops::sinusoid_table<float>(View<float, 2>(buf.data(), 0, 4)),
                      "sinusoid_table: zero-sized dimension: P (0, 4)");
  REQUIRE_THROWS_WITH(ops::sinusoid_table<float>(View<float, 2>()),
                      "sinusoid_table: zero-sized dimension: P (0, 0)");
  for (float v : buf) REQUIRE(v == 7.f);
}

TEST_CASE("embedding forward matches a naive loop", "[embedding]") {
  for (auto [B, T, d, V, S] : {std::tuple<Index, Index, Index, Index, Index>{1, 1, 2, 1, 1},
                               {2, 5, 6, 7, 5}, {3, 9, 10, 4, 16}, {4, 33, 130, 50, 40}}) {
    auto E = test::uniform(V * d, 1), P = test::uniform(S * d, 2);
    const auto ids = random_ids(B * T, V, 3);
    std::vector<double> x(B * T * d, std::numeric_limits<double>::quiet_NaN());
    ops::embedding_forward<double>(View<double, 3>(x.data(), B, T, d),
                                   View<const std::int32_t, 2>(ids.data(), B, T),
                                   View<const double, 2>(E.data(), V, d), View<const double, 2>(P.data(), S, d));
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t)
        for (Index j = 0; j < d; ++j) {
          const double ref = E[ids[b * T + t] * d + j] + P[t * d + j];
          REQUIRE(x[(b * T + t) * d + j] == ref);
        }
  }
}

TEST_CASE("embedding gradient passes central differences in double, repeated ids included",
          "[embedding][gradcheck]") {
  for (auto [B, T, d, V, S] : {std::tuple<Index, Index, Index, Index, Index>{1, 1, 2, 1, 1},
                               {2, 3, 4, 5, 3}, {3, 7, 6, 3, 9}, {2, 5, 70, 4, 5}}) {
    const auto ids = random_ids(B * T, V, 40 + B);
    test::OpUnderTest op;
    op.args = {{"E", test::uniform(V * d, 10)}, {"P", test::uniform(S * d, 11), false}};
    op.out_size = B * T * d;
    op.forward = [&](const std::vector<double*>& a, double* x) {
      ops::embedding_forward<double>(View<double, 3>(x, B, T, d),
                                     View<const std::int32_t, 2>(ids.data(), B, T),
                                     View<const double, 2>(a[0], V, d), View<const double, 2>(a[1], S, d));
    };
    op.backward = [&](const std::vector<double*>&, const double*, const double* dx,
                      const std::vector<double*>& g) {
      REQUIRE(g[1] == nullptr);
      ops::embedding_backward<double>(View<const double, 3>(dx, B, T, d),
                                      View<const std::int32_t, 2>(ids.data(), B, T),
                                      View<double, 2>(g[0], V, d));
    };
    test::check_op(op);
  }
}

TEST_CASE("embedding backward accumulates every occurrence of a repeated id", "[embedding]") {
  // ids: token 2 three times, token 0 once, token 1 never.
  const Index B = 2, T = 2, d = 3, V = 3;
  const std::vector<std::int32_t> ids{2, 0, 2, 2};
  const std::vector<double> dx{1, 2, 3, 10, 20, 30, 100, 200, 300, 1000, 2000, 3000};
  std::vector<double> dE{5, 5, 5, 6, 6, 6, 7, 7, 7};
  ops::embedding_backward<double>(View<const double, 3>(dx.data(), B, T, d),
                                  View<const std::int32_t, 2>(ids.data(), B, T),
                                  View<double, 2>(dE.data(), V, d));
  REQUIRE(dE == std::vector<double>{15, 25, 35, 6, 6, 6, 1108, 2209, 3310});
  // No gradient wanted: nothing happens.
  REQUIRE_NOTHROW(ops::embedding_backward<double>(View<const double, 3>(dx.data(), B, T, d),
                                                  View<const std::int32_t, 2>(ids.data(), B, T), {}));
}

TEST_CASE("embedding is bitwise identical with 1 and 2 threads", "[embedding][threads]") {
  const Index B = 8, T = 200, d = 390, V = 60, S = 256;
  std::vector<float> E(V * d), P(S * d), dx(B * T * d);
  hattn::Generator g(9);
  for (auto* v : {&E, &dx})
    for (auto& e : *v) e = float(g.uniform(-1, 1));
  ops::sinusoid_table<float>(View<float, 2>(P.data(), S, d));
  const auto ids = random_ids(B * T, V, 4);  // about 27 repeats of each id
  auto run = [&] {
    std::vector<float> x(B * T * d), dE(V * d, 0.5f);
    ops::embedding_forward<float>(View<float, 3>(x.data(), B, T, d),
                                  View<const std::int32_t, 2>(ids.data(), B, T),
                                  View<const float, 2>(E.data(), V, d), View<const float, 2>(P.data(), S, d));
    ops::embedding_backward<float>(View<const float, 3>(dx.data(), B, T, d),
                                   View<const std::int32_t, 2>(ids.data(), B, T),
                                   View<float, 2>(dE.data(), V, d));
    x.insert(x.end(), dE.begin(), dE.end());
    return x;
  };
  const auto one = test::with_threads(1, run);
  const auto two = test::with_threads(2, run);
  REQUIRE(one == two);
}

TEST_CASE("embedding on the tape gives the direct backward's gradient", "[embedding][tape]") {
  static_assert(hattn::TapeNode<ops::EmbeddingNode<float>>);
  static_assert(hattn::TapeNode<ops::EmbeddingNode<double>>);
  const Index B = 2, T = 4, d = 6, V = 5, S = 8;
  auto E = test::uniform(V * d, 1), P = std::vector<double>(S * d), dx = test::uniform(B * T * d, 2);
  ops::sinusoid_table<double>(View<double, 2>(P.data(), S, d));
  const auto ids = random_ids(B * T, V, 5);
  std::vector<double> x(B * T * d), dE(V * d, 0.0), x_ref(B * T * d), dE_ref(V * d, 0.0);
  View<const std::int32_t, 2> id_view(ids.data(), B, T);

  hattn::Tape tape;
  ops::embedding<double>(&tape, {View<double, 3>(x.data(), B, T, d), View<double, 3>(dx.data(), B, T, d)},
                         id_view, {View<double, 2>(E.data(), V, d), View<double, 2>(dE.data(), V, d)},
                         View<const double, 2>(P.data(), S, d));
  REQUIRE(tape.size() == 1);
  tape.backward();

  ops::embedding_forward<double>(View<double, 3>(x_ref.data(), B, T, d), id_view,
                                 View<const double, 2>(E.data(), V, d), View<const double, 2>(P.data(), S, d));
  ops::embedding_backward<double>(View<const double, 3>(dx.data(), B, T, d), id_view,
                                  View<double, 2>(dE_ref.data(), V, d));
  REQUIRE(x == x_ref);
  REQUIRE(dE == dE_ref);
  double norm = 0;
  for (double v : dE) norm += std::abs(v);
  REQUIRE(norm > 0);

  // Inference: no tape, nothing recorded, same output.
  std::vector<double> x_inf(B * T * d);
  ops::embedding<double>(nullptr, {View<double, 3>(x_inf.data(), B, T, d), {}}, id_view,
                         {View<double, 2>(E.data(), V, d), {}}, View<const double, 2>(P.data(), S, d));
  REQUIRE(x_inf == x_ref);
}

TEST_CASE("embedding rejects bad ids and shapes with exact messages, writing nothing",
          "[embedding][errors]") {
  const Index B = 2, T = 3, d = 4, V = 5, S = 8;
  std::vector<float> E(V * d, 1.f), P(S * d, 2.f), x(B * T * d, -3.f), dE(V * d, 4.f), big(64, 0.f);
  std::vector<std::int32_t> ids{0, 1, 2, 3, 4, 0};
  View<float, 3> xv(x.data(), B, T, d);
  View<const float, 2> Ev(E.data(), V, d), Pv(P.data(), S, d);
  View<const std::int32_t, 2> idv(ids.data(), B, T);
  View<const float, 3> dxv(big.data(), B, T, d);
  const auto untouched = [&] {
    for (float v : x) REQUIRE(v == -3.f);
    for (float v : dE) REQUIRE(v == 4.f);
  };

  ids[4] = -1;  // (b, t) = (1, 1)
  REQUIRE_THROWS_WITH(ops::embedding_forward<float>(xv, idv, Ev, Pv),
                      "embedding_forward: token id -1 at (b, t) = (1, 1) is outside the vocabulary [0, 5)");
  REQUIRE_THROWS_WITH(ops::embedding_backward<float>(dxv, idv, View<float, 2>(dE.data(), V, d)),
                      "embedding_backward: token id -1 at (b, t) = (1, 1) is outside the vocabulary [0, 5)");
  ids[4] = 4;
  ids[5] = 5;  // == V, the last position: every earlier row is valid yet nothing is written
  REQUIRE_THROWS_WITH(ops::embedding_forward<float>(xv, idv, Ev, Pv),
                      "embedding_forward: token id 5 at (b, t) = (1, 2) is outside the vocabulary [0, 5)");
  REQUIRE_THROWS_WITH(ops::embedding_backward<float>(dxv, idv, View<float, 2>(dE.data(), V, d)),
                      "embedding_backward: token id 5 at (b, t) = (1, 2) is outside the vocabulary [0, 5)");
  ids[5] = 0;
  untouched();

  // T > S: 3 tokens against a 2-row table.
  REQUIRE_THROWS_WITH(ops::embedding_forward<float>(xv, idv, Ev, View<const float, 2>(P.data(), 2, d)),
                      "embedding_forward: sequence of 3 tokens exceeds the position table's 2 rows");
  REQUIRE_THROWS_WITH(
      ops::embedding_forward<float>(xv, idv, View<const float, 2>(E.data(), 4, 5), Pv),
      "embedding_forward: shape mismatch: x (2, 3, 4), ids (2, 3), E (4, 5), P (8, 4) "
      "(want x (B, T, d), ids (B, T), E (V, d), P (S, d))");
  REQUIRE_THROWS_WITH(
      ops::embedding_forward<float>(xv, View<const std::int32_t, 2>(ids.data(), 3, 2), Ev, Pv),
      "embedding_forward: shape mismatch: x (2, 3, 4), ids (3, 2), E (5, 4), P (8, 4) "
      "(want x (B, T, d), ids (B, T), E (V, d), P (S, d))");
  REQUIRE_THROWS_WITH(
      ops::embedding_forward<float>(xv, idv, Ev, View<const float, 2>(P.data(), 16, 2)),
      "embedding_forward: shape mismatch: x (2, 3, 4), ids (2, 3), E (5, 4), P (16, 2) "
      "(want x (B, T, d), ids (B, T), E (V, d), P (S, d))");
  // The position table is required.
  REQUIRE_THROWS_WITH(ops::embedding_forward<float>(xv, idv, Ev, {}),
                      "embedding_forward: zero-sized dimension: x (2, 3, 4), ids (2, 3), E (5, 4), P (0, 0)");
  REQUIRE_THROWS_WITH(ops::embedding_forward<float>(View<float, 3>(x.data(), 0, 3, 4),
                                                    View<const std::int32_t, 2>(ids.data(), 0, 3), Ev, Pv),
                      "embedding_forward: zero-sized dimension: x (0, 3, 4), ids (0, 3), E (5, 4), P (8, 4)");
  REQUIRE_THROWS_WITH(ops::embedding_forward<float>(xv, idv, View<const float, 2>(E.data(), 0, 4), Pv),
                      "embedding_forward: zero-sized dimension: x (2, 3, 4), ids (2, 3), E (0, 4), P (8, 4)");
  REQUIRE_THROWS_WITH(ops::embedding_backward<float>(dxv, idv, View<float, 2>(dE.data(), 4, 5)),
                      "embedding_backward: shape mismatch: dx (2, 3, 4), ids (2, 3), dE (4, 5) "
                      "(want dx (B, T, d), ids (B, T), dE (V, d))");
  REQUIRE_THROWS_WITH(ops::embedding_backward<float>(View<const float, 3>(big.data(), 2, 0, 4),
                                                     View<const std::int32_t, 2>(ids.data(), 2, 0),
                                                     View<float, 2>(dE.data(), V, d)),
                      "embedding_backward: zero-sized dimension: dx (2, 0, 4), ids (2, 0)");
  untouched();
}
