#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "hattn/core/arena.hpp"
#include "hattn/core/tensor.hpp"

using hattn::Arena;
using hattn::ArenaPlan;
using hattn::Index;
using hattn::View;

TEST_CASE("View indexes row-major, reshapes, and converts to const and to Eigen", "[tensor]") {
  std::vector<float> buf(24);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = float(i);
  View<float, 3> v(buf.data(), 2, 3, 4);
  REQUIRE(v.size() == 24);
  REQUIRE(v.shape() == "(2, 3, 4)");
  REQUIRE(v(1, 2, 3) == 23.0f);
  REQUIRE(v(1, 0, 2) == 14.0f);
  const View<float, 2> m = v.matrix();
  REQUIRE(m.dim(0) == 6);
  REQUIRE(m.dim(1) == 4);
  REQUIRE(m(5, 1) == 21.0f);
  const View<const float, 3> c = v;
  REQUIRE(c.data == v.data);
  REQUIRE(c.map()(1, 2, 3) == 23.0f);  // Eigen TensorMap agrees on the layout
  REQUIRE(!View<float, 1>().present());

  hattn::Tensor<double, 2> t(3, 5);
  t.setConstant(2.5);
  View<double, 2> tv(t);
  REQUIRE(tv.dims == std::array<Index, 2>{3, 5});
  tv(2, 4) = 7.0;
  REQUIRE(t(2, 4) == 7.0);
}

TEST_CASE("Rows address blocks of rows in strided buffers", "[tensor]") {
  std::vector<int> buf(6 * 4);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = int(i);
  View<int, 2> m(buf.data(), 6, 4);
  const auto b = hattn::blocks_of(m, 2);
  REQUIRE(b.groups == 3);
  REQUIRE(b.rows == 2);
  REQUIRE(*b.row(2, 1) == 20);
  REQUIRE(b.shape() == "(3, 2, 4)");
  const auto all = hattn::rows_of(m);
  REQUIRE(all.groups == 1);
  REQUIRE(*all.row(0, 5) == 20);
  REQUIRE_THROWS_WITH(hattn::blocks_of(m, 4), "blocks_of: cannot split (6, 4) into blocks of 4 rows");
}

TEST_CASE("Arena hands out aligned blocks sized by an ArenaPlan and never grows by itself", "[arena]") {
  ArenaPlan plan;
  REQUIRE(plan.add<float>(3) == 0);
  REQUIRE(plan.add<float>(17) == 16);  // 64-byte units of 16 floats
  REQUIRE(plan.add<float>(16) == 48);
  REQUIRE(plan.total() == 64);

  Arena<float> arena(plan.total());
  float* a = arena.take(3);
  float* b = arena.take(17);
  auto c = arena.view(4, 4);
  REQUIRE(b - a == 16);
  REQUIRE(c.data - a == 48);
  REQUIRE(c.shape() == "(4, 4)");
  for (float* p : {a, b, c.data}) REQUIRE(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
  REQUIRE(arena.used() == plan.total());
  REQUIRE(a[0] == 0.0f);  // new memory is zeroed
  REQUIRE_THROWS_WITH(arena.take(1), "Arena::take: request of 1 elements exceeds the capacity (64 of 64 used)");

  // reset keeps the memory; reserve of a smaller size keeps the buffer.
  arena.reset();
  REQUIRE(arena.take(3) == a);
  arena.reserve(10);
  REQUIRE(arena.data() == a);
  REQUIRE(arena.capacity() == 64);
  arena.reserve(1000);
  REQUIRE(arena.capacity() == 1000);
  REQUIRE(arena.used() == 0);
  arena.data()[5] = 3.0f;
  arena.zero();
  REQUIRE(arena.data()[5] == 0.0f);
}
