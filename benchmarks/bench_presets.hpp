#pragma once
// What hattn_bench (bench_model.cpp) and hattn_scaling (bench_scaling.cpp) share: the presets'
// model widths and their random training batches. No Google Benchmark dependency.

#include <cstdint>

#include <hattn/hattn.hpp>

namespace hattn_bench {

/// The presets' compile-time shapes (their vocabularies, lengths and batches are in bench_model.cpp).
inline constexpr hattn::Config tiny_width{.levels = 3, .heads = 4, .d_model = 64};
inline constexpr hattn::Config medium_width{.levels = 3, .heads = 8, .d_model = 256};
inline constexpr hattn::Config seed_width{.levels = 5, .heads = 12, .d_model = 768};

/// Random token ids (B, T) in [0, V) and their next-token targets, the last position -100 (SPEC.md).
struct Batch {
  hattn::Tensor<std::int32_t, 2> ids, targets;  ///< (B, T) each
  Batch(hattn::Index batch, hattn::Index tokens, hattn::Index vocab) : ids(batch, tokens), targets(batch, tokens) {
    hattn::Generator gen(7);
    for (hattn::Index b = 0; b < batch; ++b)
      for (hattn::Index t = 0; t < tokens; ++t) ids(b, t) = std::int32_t(gen.below(std::uint64_t(vocab)));
    for (hattn::Index b = 0; b < batch; ++b)
      for (hattn::Index t = 0; t < tokens; ++t) targets(b, t) = t + 1 < tokens ? ids(b, t + 1) : -100;
  }
};

}  // namespace hattn_bench
