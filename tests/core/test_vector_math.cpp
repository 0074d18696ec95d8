// hattn/core/vector_math.hpp: exp_pack is defined for every input (NaN in, NaN out) and gives the
// same bits as before NaN was handled for every other input.

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hattn/core/vector_math.hpp"

namespace {

using hattn::detail::FloatPack;
using hattn::detail::IntPack;
constexpr int lanes = hattn::detail::pack_floats;

// exp_pack as it was before NaN was made well-defined (undefined behaviour for NaN only: the
// float-to-int conversion of a NaN).
FloatPack old_exp_pack(FloatPack x) {
  constexpr float lo = -87.33654475f, hi = 88.0f;
  constexpr float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  FloatPack v = x < lo ? FloatPack{} + lo : x;
  v = v > hi ? FloatPack{} + hi : v;
  const IntPack k = __builtin_convertvector(v * log2e + 128.5f, IntPack) - 128;
  const FloatPack kf = __builtin_convertvector(k, FloatPack);
  const FloatPack r = v - kf * ln2_hi - kf * ln2_lo;
  FloatPack p = FloatPack{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const IntPack keep = x >= lo;
  const IntPack bits = ((k + 127) << 23) & keep;
  FloatPack scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

bool is_nan_bits(std::uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }

// Compares exp_pack with old_exp_pack on the non-NaN floats among `bits` (a pack at a time);
// returns the number of floats compared, and the first mismatch in `bad` (0 for none).
std::uint64_t compare(const std::vector<std::uint32_t>& bits, std::uint32_t& bad) {
  std::uint64_t compared = 0;
  FloatPack x{};
  int fill = 0;
  auto flush = [&] {
    const FloatPack a = hattn::detail::exp_pack(x), b = old_exp_pack(x);
    for (int i = 0; i < fill; ++i)
      if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i]) && bad == 0)
        bad = std::bit_cast<std::uint32_t>(x[i]) | 0u;
    compared += static_cast<std::uint64_t>(fill);
    fill = 0;
    x = FloatPack{};
  };
  for (std::uint32_t u : bits) {
    if (is_nan_bits(u)) continue;
    x[fill++] = std::bit_cast<float>(u);
    if (fill == lanes) flush();
  }
  if (fill) flush();
  return compared;
}

}  // namespace

TEST_CASE("exp_pack gives the old bits for every non-NaN input tried", "[vector_math]") {
  // Every 61st bit pattern (all signs, exponents and mantissa bits), then every float within 2^20
  // ulps of the points where the formula changes branch: 0, the clamps, and where k steps.
  std::vector<std::uint32_t> bits;
  for (std::uint64_t u = 0; u <= 0xffffffffu; u += 61) bits.push_back(static_cast<std::uint32_t>(u));
  for (float centre : {0.0f, -0.0f, -87.33654475f, 88.0f, 0.5f * 0.693147181f, -0.5f * 0.693147181f,
                       10.5f * 0.693147181f, -60.5f * 0.693147181f})
    for (std::int64_t d = -(1 << 20); d <= (1 << 20); ++d)
      bits.push_back(static_cast<std::uint32_t>(static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(centre)) + d));
  for (float special : {INFINITY, -INFINITY, 0x1p-149f, -0x1p-149f, 3.4028235e38f, -3.4028235e38f})
    bits.push_back(std::bit_cast<std::uint32_t>(special));
  std::uint32_t bad = 0;
  const std::uint64_t n = compare(bits, bad);
  INFO("first mismatch at the float with bits " << bad);
  CHECK(bad == 0);
  CHECK(n > 80'000'000);
}

TEST_CASE("exp_shifted: NaN gives NaN, -inf gives 0, +inf saturates, in packs and in the tail", "[vector_math]") {
  for (int n : {1, lanes - 1, lanes, 3 * lanes + 2}) {
    std::vector<float> x(static_cast<std::size_t>(n), 1.0f), y(x.size());
    for (int i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = (i % 3 == 0) ? NAN : (i % 3 == 1) ? -INFINITY : INFINITY;
    hattn::exp_shifted(y.data(), x.data(), n, 0.0f);
    for (int i = 0; i < n; ++i) {
      const float v = y[static_cast<std::size_t>(i)];
      INFO("n " << n << ", i " << i);
      if (i % 3 == 0) CHECK(std::isnan(v));
      else if (i % 3 == 1) CHECK(std::bit_cast<std::uint32_t>(v) == 0u);
      else CHECK(v == std::bit_cast<float>(std::bit_cast<std::uint32_t>(old_exp_pack(FloatPack{} + 88.0f)[0])));
    }
    // A NaN shift too.
    std::vector<float> ones(static_cast<std::size_t>(n), 1.0f);
    hattn::exp_shifted(y.data(), ones.data(), n, NAN);
    for (float v : y) CHECK(std::isnan(v));
  }
}
