#pragma once
/// \file
/// Counter-based random numbers (Philox4x32-10 from Random123): every number is a pure function
/// of (seed, stream, counter), so initialization and dropout masks are reproducible and
/// independent of threads and scheduling.

#include <Random123/philox.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace hattn {

/// Philox4x32-10 keyed by a 64-bit seed. `block(stream, counter)` gives four independent 32-bit
/// words; distinct (stream, counter) pairs give independent blocks.
class Philox {
 public:
  /// A generator keyed by `seed`.
  explicit constexpr Philox(std::uint64_t seed = 0) : seed_(seed) {}

  /// The four words at (stream, counter).
  std::array<std::uint32_t, 4> block(std::uint64_t stream, std::uint64_t counter) const {
    r123::Philox4x32 rng;
    r123::Philox4x32::ctr_type c{{std::uint32_t(counter), std::uint32_t(counter >> 32),
                                  std::uint32_t(stream), std::uint32_t(stream >> 32)}};
    r123::Philox4x32::key_type k{{std::uint32_t(seed_), std::uint32_t(seed_ >> 32)}};
    const auto r = rng(c, k);
    return {r[0], r[1], r[2], r[3]};
  }

  /// Lanes of blocks() computed side by side (one SIMD register of 32-bit words with AVX2).
  static constexpr int lanes = 8;

  /// The blocks at counters [counter, counter + lanes) of `stream`, in order: out[4 j + w] is
  /// block(stream, counter + j)[w], bitwise. The lanes run the ten rounds side by side on compiler
  /// vector extensions (the 32 x 32 -> 64-bit products are vector multiplies).
  void blocks(std::uint64_t stream, std::uint64_t counter, std::uint32_t* out) const {
    using U32 = std::uint32_t __attribute__((vector_size(4 * lanes)));  // (lanes)
    using U64 = std::uint64_t __attribute__((vector_size(8 * lanes)));  // (lanes)
    U32 c0, c1;  // (lanes) counter words 0 and 1 of each lane
    for (int j = 0; j < lanes; ++j) {
      c0[j] = std::uint32_t(counter + std::uint64_t(j));
      c1[j] = std::uint32_t((counter + std::uint64_t(j)) >> 32);
    }
    U32 c2 = U32{} + std::uint32_t(stream), c3 = U32{} + std::uint32_t(stream >> 32);
    std::uint32_t k0 = std::uint32_t(seed_), k1 = std::uint32_t(seed_ >> 32);
    for (int round = 0; round < 10; ++round) {  // Random123's philox4x32round, bumpkey between
      if (round > 0) {
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
      }
      const U64 p0 = __builtin_convertvector(c0, U64) * std::uint64_t{0xD2511F53u};
      const U64 p1 = __builtin_convertvector(c2, U64) * std::uint64_t{0xCD9E8D57u};
      const U32 hi0 = __builtin_convertvector(p0 >> 32, U32), lo0 = __builtin_convertvector(p0, U32);
      const U32 hi1 = __builtin_convertvector(p1 >> 32, U32), lo1 = __builtin_convertvector(p1, U32);
      c0 = hi1 ^ c1 ^ k0;
      c1 = lo1;
      c2 = hi0 ^ c3 ^ k1;
      c3 = lo0;
    }
    for (int j = 0; j < lanes; ++j) {
      out[4 * j] = c0[j];
      out[4 * j + 1] = c1[j];
      out[4 * j + 2] = c2[j];
      out[4 * j + 3] = c3[j];
    }
  }

  /// Word `i` of stream `stream` (word i is lane i % 4 of block i / 4).
  std::uint32_t word(std::uint64_t stream, std::uint64_t i) const {
    return block(stream, i / 4)[i % 4];
  }

  /// Uniform in [0, 1) from word `i` of `stream`: 24 random bits, exact in float.
  float uniform(std::uint64_t stream, std::uint64_t i) const { return to_uniform(word(stream, i)); }

  /// The uniform in [0, 1) that a word stands for: its top 24 bits, exact in float.
  static constexpr float to_uniform(std::uint32_t word) { return float(word >> 8) * 0x1.0p-24f; }

  /// The key.
  constexpr std::uint64_t seed() const { return seed_; }

 private:
  std::uint64_t seed_;
};

/// A sequential stream over Philox for one-off sampling (initialization, batches, generation).
/// Its whole state is (seed, stream, position): saving those three resumes it exactly.
class Generator {
 public:
  /// The stream `stream` of the generator keyed by `seed`, from `position`.
  explicit Generator(std::uint64_t seed, std::uint64_t stream = 0, std::uint64_t position = 0)
      : philox_(seed), stream_(stream), position_(position) {}

  /// Next 32 random bits.
  std::uint32_t next_u32() { return philox_.word(stream_, position_++); }

  /// Next 64 random bits.
  std::uint64_t next_u64() {
    const std::uint64_t hi = next_u32();
    return hi << 32 | next_u32();
  }

  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }

  /// Uniform double in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  /// Standard normal (Box-Muller on two uniforms; one value per call).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

  /// Uniform integer in [0, n) (n >= 1), without modulo bias.
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t x;
    do x = next_u64();
    while (x >= limit);
    return x % n;
  }

  /// The key.
  std::uint64_t seed() const { return philox_.seed(); }
  /// The stream.
  std::uint64_t stream() const { return stream_; }
  /// Words consumed so far.
  std::uint64_t position() const { return position_; }

 private:
  Philox philox_;
  std::uint64_t stream_;
  std::uint64_t position_;
};

}  // namespace hattn
