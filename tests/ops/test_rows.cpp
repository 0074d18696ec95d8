#include <catch2/catch.hpp>

#include <limits>
#include <tuple>
#include <vector>

#include "hattn/ops/rows.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::View;
namespace ops = hattn::ops;
namespace test = hattn::test;

static_assert(hattn::TapeNode<ops::PadRowsNode<float>> && hattn::TapeNode<ops::SliceRowsNode<float>>);

namespace {

// (B, T, Tp, d): T == Tp, T not a power of two, Tp - T above and below one chunk, B * Tp rows
// spanning several parallel blocks of 64 rows.
const std::vector<std::tuple<Index, Index, Index, Index>> shapes = {
    {1, 1, 1, 1}, {1, 1, 4, 3}, {2, 3, 8, 5}, {3, 37, 64, 7}, {2, 100, 100, 3}, {5, 97, 128, 6}};

// y[b, t] = x[b, t] for t < T, 0 for T <= t < Tp.
std::vector<double> naive_pad(const std::vector<double>& x, Index B, Index T, Index Tp, Index d) {
  std::vector<double> y(B * Tp * d, 0.0);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index j = 0; j < d; ++j) y[(b * Tp + t) * d + j] = x[(b * T + t) * d + j];
  return y;
}

// y[b, t] = x[b, t] for t < T, from x (B, Tp, d).
std::vector<double> naive_slice(const std::vector<double>& x, Index B, Index T, Index Tp, Index d) {
  std::vector<double> y(B * T * d);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index j = 0; j < d; ++j) y[(b * T + t) * d + j] = x[(b * Tp + t) * d + j];
  return y;
}

template <class T>
View<T, 3> v3(std::vector<T>& v, Index a, Index b, Index c) {
  return {v.data(), a, b, c};
}
template <class T>
View<const T, 3> c3(const std::vector<T>& v, Index a, Index b, Index c) {
  return {v.data(), a, b, c};
}

}  // namespace

TEST_CASE("pad_rows forward copies x and zero-fills the padding rows", "[rows]") {
  for (auto [B, T, Tp, d] : shapes) {
    const auto x = test::uniform(B * T * d, 1);
    std::vector<double> y(B * Tp * d, std::numeric_limits<double>::quiet_NaN());
    ops::pad_rows_forward<double>(v3(y, B, Tp, d), c3(x, B, T, d));
    REQUIRE(y == naive_pad(x, B, T, Tp, d));
  }
}

TEST_CASE("slice_rows forward takes the first T rows", "[rows]") {
  for (auto [B, T, Tp, d] : shapes) {
    const auto x = test::uniform(B * Tp * d, 2);
    std::vector<double> y(B * T * d, std::numeric_limits<double>::quiet_NaN());
    ops::slice_rows_forward<double>(v3(y, B, T, d), c3(x, B, Tp, d));
    REQUIRE(y == naive_slice(x, B, T, Tp, d));
  }
}

TEST_CASE("slicing a padded tensor gives it back bitwise, and so do the backward passes", "[rows]") {
  for (auto [B, T, Tp, d] : shapes) {
    const auto xd = test::uniform(B * T * d, 3);
    const std::vector<float> x(xd.begin(), xd.end());
    std::vector<float> padded(B * Tp * d, 1.f), back(B * T * d, 2.f);
    ops::pad_rows_forward<float>(v3(padded, B, Tp, d), c3(x, B, T, d));
    ops::slice_rows_forward<float>(v3(back, B, T, d), c3(padded, B, Tp, d));
    REQUIRE(back == x);

    // Gradients go the other way: slice backward scatters into zeros, pad backward gathers back.
    std::vector<float> g_padded(B * Tp * d, 0.f), g_back(B * T * d, 0.f);
    ops::slice_rows_backward<float>(c3(x, B, T, d), v3(g_padded, B, Tp, d));
    ops::pad_rows_backward<float>(c3(g_padded, B, Tp, d), v3(g_back, B, T, d));
    REQUIRE(g_back == x);
  }
}

TEST_CASE("row backward passes add into dx and leave the other rows alone", "[rows]") {
  for (auto [B, T, Tp, d] : shapes) {
    // pad: dx (B, T, d) += dy[:, :T]; the padding rows of dy are dropped.
    const auto dy_long = test::uniform(B * Tp * d, 4), pre_short = test::uniform(B * T * d, 5);
    auto dx_short = pre_short;
    ops::pad_rows_backward<double>(c3(dy_long, B, Tp, d), v3(dx_short, B, T, d));
    const auto kept = naive_slice(dy_long, B, T, Tp, d);
    for (std::size_t i = 0; i < dx_short.size(); ++i) REQUIRE(dx_short[i] == pre_short[i] + kept[i]);

    // slice: dx (B, Tp, d)[:, :T] += dy; rows T.. of dx keep their values.
    const auto dy_short = test::uniform(B * T * d, 6), pre_long = test::uniform(B * Tp * d, 7);
    auto dx_long = pre_long;
    ops::slice_rows_backward<double>(c3(dy_short, B, T, d), v3(dx_long, B, Tp, d));
    const auto spread = naive_pad(dy_short, B, T, Tp, d);
    for (std::size_t i = 0; i < dx_long.size(); ++i) REQUIRE(dx_long[i] == pre_long[i] + spread[i]);
  }
  std::vector<double> dy(4);
  REQUIRE_NOTHROW(ops::pad_rows_backward<double>(c3(dy, 1, 2, 2), {}));
  REQUIRE_NOTHROW(ops::slice_rows_backward<double>(c3(dy, 1, 2, 2), {}));
}

TEST_CASE("pad_rows and slice_rows gradients pass central differences in double", "[rows][gradcheck]") {
  for (auto [B, T, Tp, d] : {std::tuple<Index, Index, Index, Index>{1, 1, 1, 1}, {1, 2, 4, 3}, {2, 3, 8, 5},
                             {3, 5, 6, 2}, {2, 7, 7, 3}}) {
    test::OpUnderTest pad;
    pad.args = {{"x", test::uniform(B * T * d, 10)}};
    pad.out_size = B * Tp * d;
    pad.forward = [&](const std::vector<double*>& a, double* y) {
      ops::pad_rows_forward<double>(View<double, 3>(y, B, Tp, d), View<const double, 3>(a[0], B, T, d));
    };
    pad.backward = [&](const std::vector<double*>&, const double*, const double* dy,
                       const std::vector<double*>& g) {
      ops::pad_rows_backward<double>(View<const double, 3>(dy, B, Tp, d), View<double, 3>(g[0], B, T, d));
    };
    test::check_op(pad);

    test::OpUnderTest slice;
    slice.args = {{"x", test::uniform(B * Tp * d, 11)}};
    slice.out_size = B * T * d;
    slice.forward = [&](const std::vector<double*>& a, double* y) {
      ops::slice_rows_forward<double>(View<double, 3>(y, B, T, d), View<const double, 3>(a[0], B, Tp, d));
    };
    slice.backward = [&](const std::vector<double*>&, const double*, const double* dy,
                         const std::vector<double*>& g) {
      ops::slice_rows_backward<double>(View<const double, 3>(dy, B, T, d), View<double, 3>(g[0], B, Tp, d));
    };
    test::check_op(slice);
  }
}

TEST_CASE("row ops are bitwise identical with 1 and 2 threads", "[rows][threads]") {
  const Index B = 3, T = 300, Tp = 384, d = 65;
  const auto xd = test::uniform(B * T * d, 20), gd = test::uniform(B * T * d, 21);
  const std::vector<float> x(xd.begin(), xd.end()), g(gd.begin(), gd.end());
  auto run = [&] {
    std::vector<float> padded(B * Tp * d), back(B * T * d), g_padded(B * Tp * d, 0.5f), g_back(B * T * d, 0.25f);
    ops::pad_rows_forward<float>(v3(padded, B, Tp, d), c3(x, B, T, d));
    ops::slice_rows_forward<float>(v3(back, B, T, d), c3(padded, B, Tp, d));
    ops::slice_rows_backward<float>(c3(g, B, T, d), v3(g_padded, B, Tp, d));
    ops::pad_rows_backward<float>(c3(g_padded, B, Tp, d), v3(g_back, B, T, d));
    for (auto* v : {&back, &g_padded, &g_back}) padded.insert(padded.end(), v->begin(), v->end());
    return padded;
  };
  REQUIRE(test::with_threads(1, run) == test::with_threads(2, run));
}

TEST_CASE("row ops reject bad shapes and overlaps with exact messages", "[rows][errors]") {
  std::vector<float> buf(256);
  float* lo = buf.data();
  float* hi = buf.data() + 128;
  // pad_rows_forward: y (B, Tp, d), x (B, T, d).
  REQUIRE_THROWS_WITH(ops::pad_rows_forward<float>(View<float, 3>(lo, 2, 4, 3), View<const float, 3>(hi, 3, 2, 3)),
                      "pad_rows_forward: shape mismatch: y (2, 4, 3), x (3, 2, 3) "
                      "(want y (B, Tp, d), x (B, T, d), T <= Tp)");
  REQUIRE_THROWS_WITH(ops::pad_rows_forward<float>(View<float, 3>(lo, 2, 4, 3), View<const float, 3>(hi, 2, 2, 4)),
                      "pad_rows_forward: shape mismatch: y (2, 4, 3), x (2, 2, 4) "
                      "(want y (B, Tp, d), x (B, T, d), T <= Tp)");
  REQUIRE_THROWS_WITH(ops::pad_rows_forward<float>(View<float, 3>(lo, 2, 4, 3), View<const float, 3>(hi, 2, 5, 3)),
                      "pad_rows_forward: shape mismatch: y (2, 4, 3), x (2, 5, 3) "
                      "(want y (B, Tp, d), x (B, T, d), T <= Tp)");
  REQUIRE_THROWS_WITH(ops::pad_rows_forward<float>(View<float, 3>(lo, 2, 4, 0), View<const float, 3>(hi, 2, 2, 0)),
                      "pad_rows_forward: zero-sized dimension: y (2, 4, 0), x (2, 2, 0)");
  REQUIRE_THROWS_WITH(ops::pad_rows_forward<float>(View<float, 3>(lo, 2, 4, 3), View<const float, 3>(hi, 2, 0, 3)),
                      "pad_rows_forward: zero-sized dimension: y (2, 4, 3), x (2, 0, 3)");
  REQUIRE_THROWS_WITH(ops::pad_rows_forward<float>(View<float, 3>(lo, 2, 4, 3), View<const float, 3>(lo + 20, 2, 2, 3)),
                      "pad_rows_forward: y overlaps x");
  // pad_rows_backward: dy (B, Tp, d), dx (B, T, d).
  REQUIRE_THROWS_WITH(ops::pad_rows_backward<float>(View<const float, 3>(lo, 2, 4, 3), View<float, 3>(hi, 2, 6, 3)),
                      "pad_rows_backward: shape mismatch: dy (2, 4, 3), dx (2, 6, 3) "
                      "(want dy (B, Tp, d), dx (B, T, d), T <= Tp)");
  REQUIRE_THROWS_WITH(ops::pad_rows_backward<float>(View<const float, 3>(lo, 0, 4, 3), View<float, 3>(hi, 0, 2, 3)),
                      "pad_rows_backward: zero-sized dimension: dy (0, 4, 3), dx (0, 2, 3)");
  REQUIRE_THROWS_WITH(ops::pad_rows_backward<float>(View<const float, 3>(lo, 2, 4, 3), View<float, 3>(lo, 2, 2, 3)),
                      "pad_rows_backward: dy overlaps dx");
  // slice_rows_forward: y (B, T, d), x (B, Tp, d).
  REQUIRE_THROWS_WITH(ops::slice_rows_forward<float>(View<float, 3>(lo, 2, 5, 3), View<const float, 3>(hi, 2, 4, 3)),
                      "slice_rows_forward: shape mismatch: y (2, 5, 3), x (2, 4, 3) "
                      "(want y (B, T, d), x (B, Tp, d), T <= Tp)");
  REQUIRE_THROWS_WITH(ops::slice_rows_forward<float>(View<float, 3>(lo, 1, 2, 3), View<const float, 3>(hi, 2, 4, 3)),
                      "slice_rows_forward: shape mismatch: y (1, 2, 3), x (2, 4, 3) "
                      "(want y (B, T, d), x (B, Tp, d), T <= Tp)");
  REQUIRE_THROWS_WITH(ops::slice_rows_forward<float>(View<float, 3>(lo, 0, 2, 3), View<const float, 3>(hi, 0, 4, 3)),
                      "slice_rows_forward: zero-sized dimension: y (0, 2, 3), x (0, 4, 3)");
  REQUIRE_THROWS_WITH(ops::slice_rows_forward<float>(View<float, 3>(lo + 20, 2, 2, 3), View<const float, 3>(lo, 2, 4, 3)),
                      "slice_rows_forward: y overlaps x");
  // slice_rows_backward: dy (B, T, d), dx (B, Tp, d).
  REQUIRE_THROWS_WITH(ops::slice_rows_backward<float>(View<const float, 3>(lo, 2, 2, 3), View<float, 3>(hi, 2, 4, 2)),
                      "slice_rows_backward: shape mismatch: dy (2, 2, 3), dx (2, 4, 2) "
                      "(want dy (B, T, d), dx (B, Tp, d), T <= Tp)");
  REQUIRE_THROWS_WITH(ops::slice_rows_backward<float>(View<const float, 3>(lo, 2, 2, 3), View<float, 3>(lo + 11, 2, 4, 3)),
                      "slice_rows_backward: dy overlaps dx");
}

TEST_CASE("pad_rows and slice_rows wrappers record nodes that chain on the tape", "[rows]") {
  const Index B = 2, T = 5, Tp = 8, d = 3;
  const auto x = test::uniform(B * T * d, 30), g = test::uniform(B * T * d, 31);
  std::vector<double> xv = x, padded(B * Tp * d), y(B * T * d);
  std::vector<double> dx(B * T * d, 0.0), dpadded(B * Tp * d, 0.0), dy = g;
  hattn::Tape tape;
  ops::pad_rows<double>(&tape, {v3(padded, B, Tp, d), v3(dpadded, B, Tp, d)}, {v3(xv, B, T, d), v3(dx, B, T, d)});
  ops::slice_rows<double>(&tape, {v3(y, B, T, d), v3(dy, B, T, d)}, {v3(padded, B, Tp, d), v3(dpadded, B, Tp, d)});
  REQUIRE(tape.size() == 2);
  REQUIRE(y == x);
  tape.backward();
  REQUIRE(dx == g);
  // The padding rows' gradient stays zero: slice gives them nothing.
  REQUIRE(dpadded == naive_pad(g, B, T, Tp, d));

  std::vector<double> p2(B * Tp * d);
  ops::pad_rows<double>(nullptr, {v3(p2, B, Tp, d), {}}, {v3(xv, B, T, d), {}});
  REQUIRE(p2 == padded);
}
