#pragma once
/// \file
/// The row math of softmax, cross-entropy and LayerNorm: exp(x - shift) over a buffer and sums
/// in double. Both give the same bits for an element whatever the buffer's address or length, so an
/// op computes identical values in place or not, in arena or heap memory (a library exp would be
/// peeled to the vector alignment: scalar for the first elements, vector for the rest).
///
/// float exp is Cephes' expf (the degree-6 polynomial after range reduction by ln 2) written on
/// GCC/Clang vector extensions, as wide as the target allows (16 floats with AVX-512, 8 with AVX,
/// 4 with SSE2 or NEON), with the tail padded into one more vector: about 3x (SSE2) to 7x
/// (AVX-512) the speed of a scalar std::exp loop, within 1 ulp of the exact value for normal
/// results; the one float-to-int truncation is the target's instruction (an intrinsic), whose
/// result is defined for NaN, where the language's conversion is not. double uses std::exp
/// (gradient checks, where speed does not matter).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "hattn/core/tensor.hpp"

namespace hattn {

namespace detail {

#if defined(__AVX512F__)
inline constexpr int simd_bytes = 64;
#elif defined(__AVX__)
inline constexpr int simd_bytes = 32;
#else
inline constexpr int simd_bytes = 16;
#endif

/// simd_bytes / 4 floats, and as many 32-bit integers.
typedef float FloatPack __attribute__((vector_size(simd_bytes)));
typedef std::int32_t IntPack __attribute__((vector_size(simd_bytes)));
inline constexpr Index pack_floats = simd_bytes / 4;

/// As many unsigned 32-bit integers (arithmetic that wraps).
typedef std::uint32_t UIntPack __attribute__((vector_size(simd_bytes)));

/// Every lane truncated toward zero to a 32-bit integer, as bits: t converted like
/// __builtin_convertvector(t, IntPack), by the same instruction, for every t in the int32 range;
/// for NaN (where that conversion would be undefined) the instruction's defined result (x86:
/// 0x80000000, Arm: 0), or 0 on targets without one of these.
inline UIntPack truncate_bits(FloatPack t) {
#if defined(__AVX512F__)
  // (the zero-masked form with every lane kept: GCC 12 warns falsely on the unmasked one)
  return (UIntPack)_mm512_maskz_cvttps_epi32(static_cast<__mmask16>(0xffff), (__m512)t);
#elif defined(__AVX__)
  return (UIntPack)_mm256_cvttps_epi32((__m256)t);
#elif defined(__SSE2__)
  return (UIntPack)_mm_cvttps_epi32((__m128)t);
#elif defined(__ARM_NEON)
  return (UIntPack)vcvtq_s32_f32((float32x4_t)t);
#else
  return (UIntPack)__builtin_convertvector(t == t ? t : FloatPack{}, IntPack);
#endif
}

/// exp of every lane: 0 below ln(FLT_MIN) = -87.3365 (so exp(-inf) = 0), saturating at exp(88)
/// above 88 (so exp(+inf) = exp(88)), NaN for NaN. Defined for every input: a NaN goes through
/// the clamps and the polynomial as NaN, and its integer part (truncate_bits) is garbage, but
/// defined, and only scaled by 0.
inline FloatPack exp_pack(FloatPack x) {
  constexpr float lo = -87.33654475f, hi = 88.0f;
  constexpr float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  FloatPack v = x < lo ? FloatPack{} + lo : x;  // NaN passes through both clamps
  v = v > hi ? FloatPack{} + hi : v;
  // k = floor(v log2e + 1/2), by truncating a positive number (v log2e > -126); unsigned, as the
  // NaN's garbage must wrap.
  const UIntPack k = truncate_bits(v * log2e + 128.5f) - 128u;
  const FloatPack kf = __builtin_convertvector((IntPack)k, FloatPack);
  const FloatPack r = v - kf * ln2_hi - kf * ln2_lo;  // |r| <= ln2 / 2
  FloatPack p = FloatPack{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;                        // exp(r)
  const IntPack keep = x >= lo;                              // all ones, or 0 below lo and for NaN
  const IntPack bits = (IntPack)((k + 127u) << 23) & keep;   // 2^k, or 0
  FloatPack scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace detail

/// y[i] = exp(x[i] - shift) for i < n; y may be x (in place). float: see the file comment
/// (exactly 0 where x[i] - shift < -87.34, e.g. x[i] = -inf); double: std::exp.
template <class T>
void exp_shifted(T* y, const T* x, Index n, T shift) {
  if constexpr (std::is_same_v<T, float>) {
    constexpr Index w = detail::pack_floats;
    Index i = 0;
    for (; i + w <= n; i += w) {
      detail::FloatPack a;
      std::memcpy(&a, x + i, sizeof a);
      const detail::FloatPack e = detail::exp_pack(a - shift);
      std::memcpy(y + i, &e, sizeof e);
    }
    if (i < n) {  // the tail, padded: computed exactly as a full pack would compute it
      detail::FloatPack a{};
      std::memcpy(&a, x + i, std::size_t(n - i) * sizeof(float));
      const detail::FloatPack e = detail::exp_pack(a - shift);
      std::memcpy(y + i, &e, std::size_t(n - i) * sizeof(float));
    }
  } else {
    for (Index i = 0; i < n; ++i) y[i] = std::exp(x[i] - shift);
  }
}

/// sum of f(i) (a double) over i in [0, n): four interleaved partial sums (term i goes to sum
/// i % 4), added as (s0 + s1) + (s2 + s3). The order depends on n only, and the four chains
/// vectorize (a single chain would wait on each add's latency).
template <class F>
double sum_double_of(Index n, F&& f) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  Index i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += f(i);
    s1 += f(i + 1);
    s2 += f(i + 2);
    s3 += f(i + 3);
  }
  for (; i < n; ++i) s0 += f(i);
  return (s0 + s1) + (s2 + s3);
}

/// sum of x[0 .. n) in double, in the order of sum_double_of.
template <class T>
double sum_double(const T* x, Index n) {
  return sum_double_of(n, [x](Index i) { return double(x[i]); });
}

}  // namespace hattn
