// Mean pooling into summaries (ops/pool.hpp): the block boundaries of SPEC.md, forward against
// loops, central differences in double, strided blocks, threads, the tape node, bad shapes.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/ops/pool.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::Rows;
namespace ops = hattn::ops;
namespace test = hattn::test;

namespace {

template <class T>
Rows<T> contiguous(T* p, Index groups, Index rows, Index cols) {
  return Rows<T>{p, groups, rows, cols, cols, rows * cols};
}

// Every (G, S, k) shape the tests run: k dividing S, not dividing it, k = 1, k = S.
struct Shape {
  Index G, S, k, C;
};
const std::vector<Shape> shapes{{1, 1, 1, 1}, {2, 8, 4, 3}, {3, 10, 3, 2}, {2, 7, 7, 4}, {1, 16, 1, 5}, {2, 13, 5, 3}};

}  // namespace

TEST_CASE("summary b pools rows [floor(b S / k), floor((b + 1) S / k)): sizes differ by at most one",
          "[pool]") {
  REQUIRE(ops::pool_start(0, 10, 3) == 0);
  REQUIRE(ops::pool_start(1, 10, 3) == 3);
  REQUIRE(ops::pool_start(2, 10, 3) == 6);
  REQUIRE(ops::pool_start(3, 10, 3) == 10);
  for (Index S = 1; S <= 40; ++S)
    for (Index k = 1; k <= S; ++k) {
      Index smallest = S, largest = 0;
      for (Index b = 0; b < k; ++b) {
        const Index n = ops::pool_start(b + 1, S, k) - ops::pool_start(b, S, k);
        smallest = std::min(smallest, n);
        largest = std::max(largest, n);
      }
      INFO("S " << S << ", k " << k);
      REQUIRE(smallest >= 1);
      REQUIRE(largest - smallest <= 1);
      REQUIRE(ops::pool_start(k, S, k) == S);
    }
}

TEST_CASE("mean_pool forward is the mean of each summary's rows, also over strided blocks", "[pool]") {
  for (const Shape& s : shapes) {
    INFO("G " << s.G << ", S " << s.S << ", k " << s.k << ", C " << s.C);
    // x as every other block of a (2 G S, C + 1) buffer: strided rows and groups.
    const Index stride = s.C + 1;
    std::vector<double> buf = test::uniform(std::size_t(2 * s.G * s.S * stride), 3 + s.S);
    const Rows<const double> x{buf.data() + 1, s.G, s.S, s.C, stride, 2 * s.S * stride};
    std::vector<double> y(std::size_t(s.G * s.k * s.C), -7);
    ops::mean_pool_forward<double>(contiguous(y.data(), s.G, s.k, s.C), x);
    for (Index g = 0; g < s.G; ++g)
      for (Index b = 0; b < s.k; ++b)
        for (Index c = 0; c < s.C; ++c) {
          const Index r0 = b * s.S / s.k, r1 = (b + 1) * s.S / s.k;
          double mean = 0;
          for (Index r = r0; r < r1; ++r) mean += x.row(g, r)[c];
          mean /= double(r1 - r0);
          REQUIRE(y[std::size_t((g * s.k + b) * s.C + c)] == Approx(mean).epsilon(1e-15).margin(1e-15));
        }
  }
}

TEST_CASE("mean_pool gradients pass central differences in double", "[pool][gradcheck]") {
  for (const Shape& s : shapes) {
    INFO("G " << s.G << ", S " << s.S << ", k " << s.k << ", C " << s.C);
    test::OpUnderTest op;
    op.args = {{"x", test::uniform(std::size_t(s.G * s.S * s.C), 11 + s.k)}};
    op.out_size = std::size_t(s.G * s.k * s.C);
    op.forward = [&](const std::vector<double*>& a, double* out) {
      ops::mean_pool_forward<double>(contiguous(out, s.G, s.k, s.C), contiguous<const double>(a[0], s.G, s.S, s.C));
    };
    op.backward = [&](const std::vector<double*>&, const double*, const double* dout,
                      const std::vector<double*>& grads) {
      ops::mean_pool_backward<double>(contiguous(dout, s.G, s.k, s.C), contiguous(grads[0], s.G, s.S, s.C));
    };
    test::check_op(op);
  }
}

TEST_CASE("mean_pool is bitwise the same with 1 and 2 threads, and its tape node runs its backward",
          "[pool][threads][tape]") {
  const Index G = 64, S = 96, k = 7, C = 33;
  const auto xv = test::uniform(std::size_t(G * S * C), 4);
  const std::vector<float> x(xv.begin(), xv.end());
  const auto dyv = test::uniform(std::size_t(G * k * C), 5);
  const std::vector<float> dy(dyv.begin(), dyv.end());
  const auto run = [&] {
    std::vector<float> y(std::size_t(G * k * C)), dx(x.size(), 0.5f);
    ops::mean_pool_forward<float>(contiguous(y.data(), G, k, C), contiguous(x.data(), G, S, C));
    ops::mean_pool_backward<float>(contiguous(dy.data(), G, k, C), contiguous(dx.data(), G, S, C));
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  };
  const auto one = test::with_threads(1, run), two = test::with_threads(2, run);
  REQUIRE(one == two);

  hattn::Tape tape;
  std::vector<float> y(std::size_t(G * k * C)), dx(x.size(), 0.5f), dyc = dy;
  std::vector<float> xc = x;
  ops::mean_pool<float>(&tape, {contiguous(y.data(), G, k, C), contiguous(dyc.data(), G, k, C)},
                        {contiguous(xc.data(), G, S, C), contiguous(dx.data(), G, S, C)});
  REQUIRE(tape.size() == 1);
  tape.backward();
  REQUIRE(std::vector<float>(one.begin() + std::ptrdiff_t(y.size()), one.end()) == dx);
}

TEST_CASE("mean_pool rejects bad shapes, naming the op and the shapes", "[pool][errors]") {
  std::vector<float> a(64), b(64);
  REQUIRE_THROWS_WITH(ops::mean_pool_forward<float>(contiguous(a.data(), 2, 5, 3), contiguous(b.data(), 2, 4, 3)),
                      "mean_pool_forward: shape mismatch: x (2, 4, 3), y (2, 5, 3) (want y (G, k, C) with k <= S "
                      "for x (G, S, C))");
  REQUIRE_THROWS_WITH(ops::mean_pool_forward<float>(contiguous(a.data(), 1, 2, 3), contiguous(b.data(), 2, 4, 3)),
                      "mean_pool_forward: shape mismatch: x (2, 4, 3), y (1, 2, 3) (want y (G, k, C) with k <= S "
                      "for x (G, S, C))");
  REQUIRE_THROWS_WITH(ops::mean_pool_backward<float>(contiguous(a.data(), 2, 0, 3), contiguous(b.data(), 2, 4, 3)),
                      "mean_pool_backward: zero-sized dimension: x (2, 4, 3), y (2, 0, 3)");
}
