#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <set>

#include "hattn/core/rng.hpp"

using hattn::Generator;
using hattn::Philox;

TEST_CASE("Philox4x32-10 reproduces Random123's known-answer vectors", "[rng]") {
  // Lanes: counter = (c0, c1), stream = (c2, c3), seed = (k0, k1), low word first.
  REQUIRE(Philox(0).block(0, 0) ==
          std::array<std::uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  REQUIRE(Philox(0xffffffffffffffffull).block(0xffffffffffffffffull, 0xffffffffffffffffull) ==
          std::array<std::uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  REQUIRE(Philox(0x299f31d0a4093822ull).block(0x0370734413198a2eull, 0x85a308d3243f6a88ull) ==
          std::array<std::uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("Philox::blocks computes its lanes bitwise as block does, across the counter's 2^32 carry",
          "[rng]") {
  for (std::uint64_t seed : {0ull, 1ull, 0x299f31d0a4093822ull, 0xffffffffffffffffull})
    for (std::uint64_t stream : {0ull, 7ull, 0x0370734413198a2eull})
      for (std::uint64_t counter : {0ull, 5ull, 0xfffffffcull, 0xffffffffffffffffull - 3, 0x85a308d3243f6a88ull}) {
        const Philox rng(seed);
        std::array<std::uint32_t, 4 * Philox::lanes> wide{};
        rng.blocks(stream, counter, wide.data());
        for (int j = 0; j < Philox::lanes; ++j) {
          const auto one = rng.block(stream, counter + std::uint64_t(j));  // wraps like the lanes
          INFO("seed " << seed << ", stream " << stream << ", counter " << counter << " + " << j);
          for (int w = 0; w < 4; ++w) REQUIRE(wide[std::size_t(4 * j + w)] == one[std::size_t(w)]);
        }
      }
  // The known-answer vector through a lane: counter 0x85a308d3243f6a88 is lane 0.
  std::array<std::uint32_t, 4 * Philox::lanes> wide{};
  Philox(0x299f31d0a4093822ull).blocks(0x0370734413198a2eull, 0x85a308d3243f6a88ull, wide.data());
  REQUIRE(std::array<std::uint32_t, 4>{wide[0], wide[1], wide[2], wide[3]} ==
          std::array<std::uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("Philox words are a pure function of (seed, stream, index)", "[rng]") {
  const Philox a(42), b(42), c(43);
  REQUIRE(a.word(3, 17) == b.word(3, 17));
  REQUIRE(a.word(3, 17) == a.block(3, 4)[1]);
  REQUIRE(a.word(3, 17) != a.word(4, 17));
  REQUIRE(a.word(3, 17) != c.word(3, 17));
  double sum = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const float u = a.uniform(9, std::uint64_t(i));
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
    sum += u;
  }
  // Mean of n uniforms: sd = sqrt(1/12/n) ~ 6.5e-4; allow 5 sd.
  REQUIRE(std::abs(sum / n - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
}

TEST_CASE("Generator is reproducible, resumable from its state, and well distributed", "[rng]") {
  Generator g(7, 2);
  for (int i = 0; i < 10; ++i) g.next_u32();
  Generator resumed(g.seed(), g.stream(), g.position());
  for (int i = 0; i < 100; ++i) REQUIRE(g.next_u64() == resumed.next_u64());

  Generator n(11);
  const int count = 100000;
  double s = 0, s2 = 0;
  for (int i = 0; i < count; ++i) {
    const double x = n.normal();
    s += x;
    s2 += x * x;
  }
  const double mean = s / count, var = s2 / count - mean * mean;
  REQUIRE(std::abs(mean) < 5 / std::sqrt(double(count)));
  REQUIRE(std::abs(var - 1.0) < 5 * std::sqrt(2.0 / count));

  Generator u(12);
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto v = u.below(7);
    REQUIRE(v < 7);
    seen.insert(v);
    const double x = u.uniform(-0.25, 0.5);
    REQUIRE(x >= -0.25);
    REQUIRE(x < 0.5);
  }
  REQUIRE(seen.size() == 7);
}
