#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "hattn/ops/dropout.hpp"
#include "hattn/ops/relu.hpp"
#include "hattn/ops/residual.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::View;
namespace ops = hattn::ops;
namespace test = hattn::test;

static_assert(hattn::TapeNode<ops::ReluNode<float>> && hattn::TapeNode<ops::DropoutNode<float>> &&
              hattn::TapeNode<ops::ResidualNode<float>>);

namespace {

// Sizes below, at and above the parallel block (2^14), none but 1 a power of two.
const std::vector<Index> sizes = {1, 7, 1000, 16383, 16385, 40001};

// Values with |x| in [lo, 1] and a random sign.
std::vector<double> signed_away_from_zero(std::size_t n, std::uint64_t seed, double lo = 0.01) {
  auto mag = test::uniform(n, seed, lo, 1.0);
  auto sign = test::uniform(n, seed + 100);
  for (std::size_t i = 0; i < n; ++i) mag[i] = sign[i] < 0 ? -mag[i] : mag[i];
  return mag;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

View<double, 1> v1(std::vector<double>& v) { return {v.data(), static_cast<Index>(v.size())}; }
View<const double, 1> c1(const std::vector<double>& v) { return {v.data(), static_cast<Index>(v.size())}; }
View<float, 1> v1(std::vector<float>& v) { return {v.data(), static_cast<Index>(v.size())}; }
View<const float, 1> c1(const std::vector<float>& v) { return {v.data(), static_cast<Index>(v.size())}; }

// The dropout mask by definition: element i kept when Philox(seed).uniform(stream, i) >= p.
std::vector<bool> reference_mask(Index n, double p, std::uint64_t seed, std::uint64_t stream) {
  const hattn::Philox rng(seed);
  std::vector<bool> keep(n);
  for (Index i = 0; i < n; ++i) keep[i] = rng.uniform(stream, std::uint64_t(i)) >= p;
  return keep;
}

// Which entries of a dropout output are nonzero (inputs are nonzero, so nonzero == kept).
std::vector<bool> kept(const std::vector<float>& y) {
  std::vector<bool> k(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) k[i] = y[i] != 0.f;
  return k;
}

std::vector<float> run_dropout(const std::vector<float>& x, double p, std::uint64_t seed, std::uint64_t stream) {
  std::vector<float> y(x.size(), std::numeric_limits<float>::quiet_NaN());
  ops::dropout_forward<float>(v1(y), c1(x), p, true, seed, stream);
  return y;
}

}  // namespace

// ---------------------------------------------------------------------------------------- relu

TEST_CASE("relu forward matches max(x, 0), also in place", "[relu]") {
  for (Index n : sizes) {
    auto x = test::uniform(n, 1);
    x[0] = 0.0;
    std::vector<double> y(n, std::nan(""));
    ops::relu_forward<double>(v1(y), c1(x));
    for (Index i = 0; i < n; ++i) REQUIRE(y[i] == (x[i] > 0 ? x[i] : 0.0));

    auto xf = to_float(x), yf = xf;
    ops::relu_forward<float>(v1(yf), c1(xf));
    ops::relu_forward<float>(v1(xf), c1(xf));  // in place
    REQUIRE(xf == yf);
    for (Index i = 0; i < n; ++i) REQUIRE(yf[i] == float(y[i]));
  }
  std::vector<float> nan_in{std::numeric_limits<float>::quiet_NaN(), -1.f, 2.f}, out(3);
  ops::relu_forward<float>(v1(out), c1(nan_in));
  CHECK(std::isnan(out[0]));
  CHECK(out[1] == 0.f);
  CHECK(out[2] == 2.f);
}

TEST_CASE("relu backward adds dy where x > 0, and the output gives the same mask", "[relu]") {
  for (Index n : sizes) {
    auto x = test::uniform(n, 2), dy = test::uniform(n, 3), prefill = test::uniform(n, 4);
    x[0] = 0.0;  // the kink takes the zero branch
    std::vector<double> dx = prefill, y(n);
    ops::relu_backward<double>(c1(dy), c1(x), v1(dx));
    for (Index i = 0; i < n; ++i) REQUIRE(dx[i] == prefill[i] + (x[i] > 0 ? dy[i] : 0.0));

    // In-place relu overwrites x with y: backward from y must give the identical result.
    ops::relu_forward<double>(v1(y), c1(x));
    std::vector<double> dx_from_y = prefill;
    ops::relu_backward<double>(c1(dy), c1(y), v1(dx_from_y));
    REQUIRE(dx_from_y == dx);
  }
  // In place (the gradient buffer holds dy and becomes dx): bitwise what a zeroed dx receives.
  for (Index n : sizes) {
    auto x = test::uniform(n, 5), dy = test::uniform(n, 6);
    x[0] = 0.0;
    x[n - 1] = -0.0;
    std::vector<float> xf(x.begin(), x.end()), g(dy.begin(), dy.end()), dx(std::size_t(n), 0.0f);
    ops::relu_backward<float>(c1(g), c1(xf), v1(dx));
    ops::relu_forward<float>(v1(xf), c1(xf));
    ops::relu_backward_in_place<float>(v1(g), c1(xf));
    REQUIRE(std::memcmp(g.data(), dx.data(), dx.size() * sizeof(float)) == 0);
  }
  // An infinite dy where the unit is off adds 0, not NaN.
  std::vector<double> x{-1.0}, dy{std::numeric_limits<double>::infinity()}, dx{0.5};
  ops::relu_backward<double>(c1(dy), c1(x), v1(dx));
  REQUIRE(dx[0] == 0.5);
  // An empty dx is skipped.
  REQUIRE_NOTHROW(ops::relu_backward<double>(c1(dy), c1(x), {}));
}

TEST_CASE("relu gradients pass central differences in double", "[relu][gradcheck]") {
  for (Index n : {Index{1}, Index{2}, Index{13}, Index{100}, Index{257}}) {
    test::OpUnderTest op;
    op.args = {{"x", signed_away_from_zero(n, 20 + n)}};
    op.out_size = n;
    op.forward = [&](const std::vector<double*>& a, double* y) {
      ops::relu_forward<double>(View<double, 1>(y, n), View<const double, 1>(a[0], n));
    };
    op.backward = [&](const std::vector<double*>& a, const double*, const double* dy,
                      const std::vector<double*>& g) {
      ops::relu_backward<double>(View<const double, 1>(dy, n), View<const double, 1>(a[0], n),
                                 View<double, 1>(g[0], n));
    };
    test::check_op(op);
  }
}

TEST_CASE("relu is bitwise identical with 1 and 2 threads", "[relu][threads]") {
  const Index n = 70001;
  const auto x = to_float(test::uniform(n, 5)), dy = to_float(test::uniform(n, 6));
  auto run = [&] {
    std::vector<float> y(n), dx(n, 0.25f);
    ops::relu_forward<float>(v1(y), c1(x));
    ops::relu_backward<float>(c1(dy), c1(x), v1(dx));
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  };
  REQUIRE(test::with_threads(1, run) == test::with_threads(2, run));
}

TEST_CASE("relu rejects bad shapes and overlaps with exact messages", "[relu][errors]") {
  std::vector<float> buf(16);
  View<float, 1> y(buf.data(), 4);
  View<const float, 1> x(buf.data() + 8, 4), x5(buf.data() + 8, 5);
  REQUIRE_THROWS_WITH(ops::relu_forward<float>(y, x5), "relu_forward: shape mismatch: y (4), x (5) (want equal sizes)");
  REQUIRE_THROWS_WITH(ops::relu_forward<float>(View<float, 1>(buf.data(), 0), View<const float, 1>(buf.data() + 8, 0)),
                      "relu_forward: zero-sized dimension: x (0)");
  REQUIRE_THROWS_WITH(ops::relu_forward<float>(y, View<const float, 1>(buf.data() + 2, 4)),
                      "relu_forward: y overlaps x without being the same buffer");
  REQUIRE_THROWS_WITH(ops::relu_backward<float>(View<const float, 1>(buf.data(), 3), x, {}),
                      "relu_backward: shape mismatch: dy (3), x (4) (want equal sizes)");
  REQUIRE_THROWS_WITH(ops::relu_backward<float>(View<const float, 1>(buf.data(), 0), View<const float, 1>(buf.data(), 0), {}),
                      "relu_backward: zero-sized dimension: x (0)");
  REQUIRE_THROWS_WITH(ops::relu_backward<float>(y, x, View<float, 1>(buf.data() + 12, 3)),
                      "relu_backward: shape mismatch: dx (3), dy (4) (want equal sizes)");
  REQUIRE_THROWS_WITH(ops::relu_backward<float>(y, x, View<float, 1>(buf.data(), 4)), "relu_backward: dx overlaps dy");
  REQUIRE_THROWS_WITH(ops::relu_backward_in_place<float>(View<float, 1>(buf.data(), 3), x),
                      "relu_backward_in_place: shape mismatch: g (3), y (4) (want equal sizes)");
}

// ------------------------------------------------------------------------------------ residual

TEST_CASE("residual forward is a + b, in place on either input and with a == b", "[residual]") {
  for (Index n : sizes) {
    const auto a = to_float(test::uniform(n, 7)), b = to_float(test::uniform(n, 8));
    std::vector<float> y(n, std::numeric_limits<float>::quiet_NaN());
    ops::residual_forward<float>(v1(y), c1(a), c1(b));
    for (Index i = 0; i < n; ++i) REQUIRE(y[i] == a[i] + b[i]);

    auto ya = a;
    ops::residual_forward<float>(v1(ya), c1(ya), c1(b));  // y = a in place
    REQUIRE(ya == y);
    auto yb = b;
    ops::residual_forward<float>(v1(yb), c1(a), c1(yb));  // y = b in place
    REQUIRE(yb == y);
    auto yy = a;
    ops::residual_forward<float>(v1(yy), c1(yy), c1(yy));  // y = a + a in place
    for (Index i = 0; i < n; ++i) REQUIRE(yy[i] == a[i] + a[i]);
  }
}

TEST_CASE("residual backward adds dy to each present gradient", "[residual]") {
  for (Index n : sizes) {
    const auto dy = test::uniform(n, 9), pa = test::uniform(n, 10), pb = test::uniform(n, 11);
    auto da = pa, db = pb;
    ops::residual_backward<double>(c1(dy), v1(da), v1(db));
    for (Index i = 0; i < n; ++i) REQUIRE((da[i] == pa[i] + dy[i] && db[i] == pb[i] + dy[i]));

    auto only_b = pb;
    ops::residual_backward<double>(c1(dy), {}, v1(only_b));
    REQUIRE(only_b == db);
    auto only_a = pa;
    ops::residual_backward<double>(c1(dy), v1(only_a), {});
    REQUIRE(only_a == da);
    auto same = pa;  // y = a + a: one gradient buffer receives dy twice
    ops::residual_backward<double>(c1(dy), v1(same), v1(same));
    for (Index i = 0; i < n; ++i) REQUIRE(same[i] == (pa[i] + dy[i]) + dy[i]);
  }
}

TEST_CASE("residual gradients pass central differences in double", "[residual][gradcheck]") {
  for (auto [n, grad_a, grad_b] : {std::tuple<Index, bool, bool>{1, true, true}, {5, true, true},
                                   {33, true, false}, {100, false, true}, {129, true, true}}) {
    test::OpUnderTest op;
    op.args = {{"a", test::uniform(n, 30), grad_a}, {"b", test::uniform(n, 31), grad_b}};
    op.out_size = n;
    op.forward = [&](const std::vector<double*>& a, double* y) {
      ops::residual_forward<double>(View<double, 1>(y, n), View<const double, 1>(a[0], n),
                                    View<const double, 1>(a[1], n));
    };
    op.backward = [&](const std::vector<double*>&, const double*, const double* dy,
                      const std::vector<double*>& g) {
      ops::residual_backward<double>(View<const double, 1>(dy, n),
                                     g[0] ? View<double, 1>(g[0], n) : View<double, 1>(),
                                     g[1] ? View<double, 1>(g[1], n) : View<double, 1>());
    };
    test::check_op(op);
  }
}

TEST_CASE("residual is bitwise identical with 1 and 2 threads", "[residual][threads]") {
  const Index n = 70001;
  const auto a = to_float(test::uniform(n, 12)), b = to_float(test::uniform(n, 13)),
             dy = to_float(test::uniform(n, 14));
  auto run = [&] {
    std::vector<float> y(n), da(n, 0.5f), db(n, -0.5f);
    ops::residual_forward<float>(v1(y), c1(a), c1(b));
    ops::residual_backward<float>(c1(dy), v1(da), v1(db));
    y.insert(y.end(), da.begin(), da.end());
    y.insert(y.end(), db.begin(), db.end());
    return y;
  };
  REQUIRE(test::with_threads(1, run) == test::with_threads(2, run));
}

TEST_CASE("residual rejects bad shapes and overlaps with exact messages", "[residual][errors]") {
  std::vector<float> buf(32);
  View<float, 1> y(buf.data(), 4);
  View<const float, 1> a(buf.data() + 8, 4), b(buf.data() + 16, 4), b3(buf.data() + 16, 3);
  REQUIRE_THROWS_WITH(ops::residual_forward<float>(y, a, b3),
                      "residual_forward: shape mismatch: y (4), a (4), b (3) (want equal sizes)");
  REQUIRE_THROWS_WITH(ops::residual_forward<float>(View<float, 1>(buf.data() + 4, 3), a, b),
                      "residual_forward: shape mismatch: y (3), a (4), b (4) (want equal sizes)");
  REQUIRE_THROWS_WITH(ops::residual_forward<float>(View<float, 1>(buf.data(), 0), View<const float, 1>(buf.data(), 0),
                                                   View<const float, 1>(buf.data(), 0)),
                      "residual_forward: zero-sized dimension: a (0)");
  REQUIRE_THROWS_WITH(ops::residual_forward<float>(View<float, 1>(buf.data() + 6, 4), a, b),
                      "residual_forward: y overlaps a without being the same buffer");
  REQUIRE_THROWS_WITH(ops::residual_forward<float>(View<float, 1>(buf.data() + 17, 4), a, b),
                      "residual_forward: y overlaps b without being the same buffer");
  REQUIRE_THROWS_WITH(ops::residual_backward<float>(View<const float, 1>(buf.data(), 0), {}, {}),
                      "residual_backward: zero-sized dimension: dy (0)");
  REQUIRE_THROWS_WITH(ops::residual_backward<float>(a, View<float, 1>(buf.data(), 5), {}),
                      "residual_backward: gradient shape mismatch: da (5) for dy (4)");
  REQUIRE_THROWS_WITH(ops::residual_backward<float>(a, {}, View<float, 1>(buf.data(), 3)),
                      "residual_backward: gradient shape mismatch: db (3) for dy (4)");
  REQUIRE_THROWS_WITH(ops::residual_backward<float>(a, View<float, 1>(buf.data() + 8, 4), {}),
                      "residual_backward: da overlaps dy");
  REQUIRE_THROWS_WITH(ops::residual_backward<float>(a, {}, View<float, 1>(buf.data() + 10, 4)),
                      "residual_backward: db overlaps dy");
}

// ------------------------------------------------------------------------------------- dropout

TEST_CASE("dropout keeps a binomially consistent fraction of elements", "[dropout]") {
  const Index n = 100000;
  const auto x = to_float(signed_away_from_zero(n, 40));
  for (double p : {0.1, 0.5}) {
    for (std::uint64_t stream : {0u, 1u, 77u}) {
      const auto y = run_dropout(x, p, 2024, stream);
      double count = 0;
      for (float v : y) count += v != 0.f;
      const double mean = double(n) * (1 - p), sigma = std::sqrt(double(n) * p * (1 - p));
      INFO("p " << p << " stream " << stream << ": kept " << count << ", expected " << mean << " +- " << sigma);
      REQUIRE(std::abs(count - mean) <= 5 * sigma);
    }
  }
}

TEST_CASE("dropout mask is Philox(seed).uniform(stream, i) >= p, kept values exactly x / (1 - p)", "[dropout]") {
  for (Index n : sizes) {
    for (double p : {0.1, 0.5, 0.9}) {
      const auto x = to_float(signed_away_from_zero(n, 41));
      const auto y = run_dropout(x, p, 99, 3);
      const auto keep = reference_mask(n, p, 99, 3);
      const float keep_prob = float(1.0 - p);
      for (Index i = 0; i < n; ++i) REQUIRE(y[i] == (keep[i] ? x[i] / keep_prob : 0.f));

      // Double uses the same mask and divides by 1 - p in double.
      const auto xd = signed_away_from_zero(n, 41);
      std::vector<double> yd(n);
      ops::dropout_forward<double>(v1(yd), c1(xd), p, true, 99, 3);
      for (Index i = 0; i < n; ++i) REQUIRE(yd[i] == (keep[i] ? xd[i] / (1.0 - p) : 0.0));

      // In place gives the same result.
      auto inplace = x;
      ops::dropout_forward<float>(v1(inplace), c1(inplace), p, true, 99, 3);
      REQUIRE(inplace == y);
    }
  }
}

TEST_CASE("dropout mask depends on seed and stream, and only on them", "[dropout][threads]") {
  const Index n = 100000;
  const auto x = to_float(signed_away_from_zero(n, 42));
  const auto base = kept(run_dropout(x, 0.5, 7, 0));
  REQUIRE(kept(run_dropout(x, 0.5, 7, 0)) == base);  // same call, same mask
  REQUIRE(kept(run_dropout(x, 0.5, 7, 1)) != base);  // another stream
  REQUIRE(kept(run_dropout(x, 0.5, 8, 0)) != base);  // another seed
  REQUIRE(kept(run_dropout(x, 0.5, std::uint64_t(1) << 40, 0)) != base);  // the seed's high word counts
  REQUIRE(kept(run_dropout(x, 0.5, 7, std::uint64_t(1) << 40)) != base);  // and the stream's

  // The mask does not depend on the input values.
  const auto x2 = to_float(signed_away_from_zero(n, 43));
  REQUIRE(kept(run_dropout(x2, 0.5, 7, 0)) == base);

  auto run = [&] {
    const auto dy = to_float(test::uniform(n, 44));
    auto y = run_dropout(x, 0.1, 5, 9);
    std::vector<float> dx(n, 1.f);
    ops::dropout_backward<float>(c1(dy), v1(dx), 0.1, true, 5, 9);
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  };
  REQUIRE(test::with_threads(1, run) == test::with_threads(2, run));
}

TEST_CASE("dropout is the identity in eval mode and for p = 0", "[dropout]") {
  for (Index n : sizes) {
    const auto x = to_float(signed_away_from_zero(n, 45));
    for (auto [p, training] : {std::pair{0.5, false}, {0.0, true}, {0.0, false}}) {
      std::vector<float> y(n, std::numeric_limits<float>::quiet_NaN());
      ops::dropout_forward<float>(v1(y), c1(x), p, training, 1, 2);
      REQUIRE(y == x);
      auto inplace = x;
      ops::dropout_forward<float>(v1(inplace), c1(inplace), p, training, 1, 2);
      REQUIRE(inplace == x);

      const auto dy = to_float(test::uniform(n, 46));
      std::vector<float> dx(n, 0.75f);
      ops::dropout_backward<float>(c1(dy), v1(dx), p, training, 1, 2);
      for (Index i = 0; i < n; ++i) REQUIRE(dx[i] == 0.75f + dy[i]);
    }
  }
}

TEST_CASE("dropout backward recomputes the forward mask", "[dropout]") {
  for (Index n : sizes) {
    const auto dy = test::uniform(n, 47), prefill = test::uniform(n, 48);
    const auto keep = reference_mask(n, 0.3, 11, 12);
    auto dx = prefill;
    ops::dropout_backward<double>(c1(dy), v1(dx), 0.3, true, 11, 12);
    for (Index i = 0; i < n; ++i) REQUIRE(dx[i] == (keep[i] ? prefill[i] + dy[i] / 0.7 : prefill[i]));
  }
  std::vector<double> dy{1.0};
  REQUIRE_NOTHROW(ops::dropout_backward<double>(c1(dy), {}, 0.3, true, 11, 12));
}

TEST_CASE("dropout over sequences: element l of sequence s draws counter (first + s) 2^40 + l, so a "
          "sequence's mask does not depend on how the batch is split", "[dropout][threads]") {
  const double p = 0.3;
  const float scale = 1.0f - float(p);
  const hattn::Philox rng(21);
  for (Index per : {Index(1), Index(7), Index(1000), Index(16385)}) {  // not multiples of 4; across a block
    const Index count = 4, n = count * per;
    const auto x = to_float(signed_away_from_zero(std::size_t(n), 3));
    std::vector<float> y(x.size(), std::numeric_limits<float>::quiet_NaN());
    ops::dropout_forward<float>(v1(y), c1(x), p, true, 21, 6, ops::DropoutSequences{count, 5});
    bool exact = true;
    std::vector<bool> keep(static_cast<std::size_t>(n));
    for (Index s = 0; s < count; ++s)
      for (Index l = 0; l < per; ++l) {
        const std::size_t i = std::size_t(s * per + l);
        keep[i] = rng.uniform(6, (std::uint64_t(5 + s) << 40) + std::uint64_t(l)) >= p;
        exact = exact && y[i] == (keep[i] ? x[i] / scale : 0.0f);
      }
    INFO("per " << per);
    CHECK(exact);
    // The last two sequences alone, at their batch indices: the same bits; at indices 0 and 1 not.
    const std::vector<float> half_x(x.begin() + 2 * per, x.end());
    std::vector<float> half_y(half_x.size()), moved(half_x.size());
    ops::dropout_forward<float>(v1(half_y), c1(half_x), p, true, 21, 6, ops::DropoutSequences{2, 7});
    CHECK(std::memcmp(half_y.data(), y.data() + 2 * per, half_y.size() * sizeof(float)) == 0);
    ops::dropout_forward<float>(v1(moved), c1(half_x), p, true, 21, 6, ops::DropoutSequences{2, 5});
    if (per >= 1000) CHECK(kept(moved) != kept(half_y));
    // Backward adds dy / (1 - p) where the forward kept, and is the same on 1 and 2 threads.
    const auto dy = to_float(signed_away_from_zero(std::size_t(n), 4));
    std::vector<float> dx(x.size(), 0.5f), dx1(x.size(), 0.5f);
    ops::dropout_backward<float>(c1(dy), v1(dx), p, true, 21, 6, ops::DropoutSequences{count, 5});
    {
      hattn::ThreadLimit one(1);
      ops::dropout_backward<float>(c1(dy), v1(dx1), p, true, 21, 6, ops::DropoutSequences{count, 5});
    }
    bool adds = true;
    for (std::size_t i = 0; i < dx.size(); ++i) adds = adds && dx[i] == (keep[i] ? 0.5f + dy[i] / scale : 0.5f);
    CHECK(adds);
    CHECK(std::memcmp(dx.data(), dx1.data(), dx.size() * sizeof(float)) == 0);
  }
  // One sequence starting at batch index 0 is the flat keying, counter i.
  const auto x = to_float(signed_away_from_zero(40001, 8));
  std::vector<float> y(x.size());
  ops::dropout_forward<float>(v1(y), c1(x), p, true, 21, 6, ops::DropoutSequences{1, 0});
  CHECK(kept(y) == reference_mask(40001, p, 21, 6));
}

TEST_CASE("dropout gradients pass central differences in double with the mask fixed by the seed",
          "[dropout][gradcheck]") {
  for (auto [n, p, training] : {std::tuple<Index, double, bool>{1, 0.1, true}, {7, 0.5, true},
                                {33, 0.1, true}, {100, 0.5, true}, {129, 0.25, true}, {10, 0.5, false}}) {
    test::OpUnderTest op;
    op.args = {{"x", test::uniform(n, 50)}};
    op.out_size = n;
    op.forward = [&](const std::vector<double*>& a, double* y) {
      ops::dropout_forward<double>(View<double, 1>(y, n), View<const double, 1>(a[0], n), p, training, 17, 4);
    };
    op.backward = [&](const std::vector<double*>&, const double*, const double* dy,
                      const std::vector<double*>& g) {
      ops::dropout_backward<double>(View<const double, 1>(dy, n), View<double, 1>(g[0], n), p, training, 17, 4);
    };
    test::check_op(op);
  }
}

TEST_CASE("dropout rejects bad p, shapes and overlaps with exact messages", "[dropout][errors]") {
  std::vector<float> buf(16);
  View<float, 1> y(buf.data(), 4);
  View<const float, 1> x(buf.data() + 8, 4);
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, x, 1.0, true, 0, 0), "dropout_forward: p must be in [0, 1), got 1");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, x, -0.1, false, 0, 0),
                      "dropout_forward: p must be in [0, 1), got -0.1");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, x, std::nan(""), true, 0, 0),
                      "dropout_forward: p must be in [0, 1), got nan");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, View<const float, 1>(buf.data() + 8, 5), 0.1, true, 0, 0),
                      "dropout_forward: shape mismatch: y (4), x (5) (want equal sizes)");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(View<float, 1>(buf.data(), 0), View<const float, 1>(buf.data(), 0), 0.1,
                                                  true, 0, 0),
                      "dropout_forward: zero-sized dimension: x (0)");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, View<const float, 1>(buf.data() + 1, 4), 0.1, true, 0, 0),
                      "dropout_forward: y overlaps x without being the same buffer");
  REQUIRE_THROWS_WITH(ops::dropout_backward<float>(x, y, 1.5, true, 0, 0), "dropout_backward: p must be in [0, 1), got 1.5");
  REQUIRE_THROWS_WITH(ops::dropout_backward<float>(View<const float, 1>(buf.data(), 0), {}, 0.1, true, 0, 0),
                      "dropout_backward: zero-sized dimension: dy (0)");
  REQUIRE_THROWS_WITH(ops::dropout_backward<float>(x, View<float, 1>(buf.data(), 3), 0.1, true, 0, 0),
                      "dropout_backward: shape mismatch: dx (3), dy (4) (want equal sizes)");
  REQUIRE_THROWS_WITH(ops::dropout_backward<float>(x, View<float, 1>(buf.data() + 10, 4), 0.1, true, 0, 0),
                      "dropout_backward: dx overlaps dy");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, x, 0.1, true, 0, 0, ops::DropoutSequences{3, 0}),
                      "dropout_forward: a buffer of 4 elements cannot be split into 3 equal sequences");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, x, 0.1, true, 0, 0, ops::DropoutSequences{0, 0}),
                      "dropout_forward: a buffer of 4 elements cannot be split into 0 equal sequences");
  REQUIRE_THROWS_WITH(ops::dropout_forward<float>(y, x, 0.1, true, 0, 0, ops::DropoutSequences{2, (1u << 24) - 1}),
                      "dropout_forward: sequences 16777215 to 16777216: batch indices must be below 2^24");
  REQUIRE_THROWS_WITH(ops::dropout_backward<float>(x, {}, 0.1, true, 0, 0, ops::DropoutSequences{4, 1u << 24}),
                      "dropout_backward: sequences 16777216 to 16777219: batch indices must be below 2^24");
}

// ------------------------------------------------------------------------------------ the tape

TEST_CASE("training wrappers record nodes whose replay gives the chained gradients", "[relu][dropout][residual]") {
  // h = relu(x) in place on a copy; r = dropout(h); y = r + x. Then dL/dx for dL/dy = g is
  // g * keep / (1 - p) * (x > 0) + g.
  const Index n = 1001;
  const double p = 0.2;
  const auto x = signed_away_from_zero(n, 60), g = test::uniform(n, 61);
  const auto keep = reference_mask(n, p, 3, 5);
  std::vector<double> xv = x, h = x, r(n), y(n), dx(n, 0.0), dh(n, 0.0), dr(n, 0.0), dy = g;
  hattn::Tape tape;
  ops::relu<double>(&tape, {v1(h), v1(dh)}, {v1(h), v1(dx)});  // in place on the value, not the gradient
  ops::dropout<double>(&tape, {v1(r), v1(dr)}, {v1(h), v1(dh)}, p, true, 3, 5);
  ops::residual<double>(&tape, {v1(y), v1(dy)}, {v1(r), v1(dr)}, {v1(xv), v1(dx)});
  REQUIRE(tape.size() == 3);
  for (Index i = 0; i < n; ++i) REQUIRE(y[i] == (keep[i] ? std::max(x[i], 0.0) / (1 - p) : 0.0) + x[i]);
  tape.backward();
  for (Index i = 0; i < n; ++i) {
    const double expect = (x[i] > 0 && keep[i] ? g[i] / (1 - p) : 0.0) + g[i];
    REQUIRE(dx[i] == Approx(expect).epsilon(1e-15));
  }

  // Without a tape nothing is recorded and the forward results are the same.
  std::vector<double> h2 = x, r2(n), y2(n);
  ops::relu<double>(nullptr, {v1(h2), {}}, {v1(h2), {}});
  ops::dropout<double>(nullptr, {v1(r2), {}}, {v1(h2), {}}, p, true, 3, 5);
  ops::residual<double>(nullptr, {v1(y2), {}}, {v1(r2), {}}, {v1(xv), {}});
  REQUIRE(y2 == y);
}
