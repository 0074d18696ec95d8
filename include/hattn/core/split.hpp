#pragma once
/// \file
/// Splitting n items into parts as evenly as they go: what the trainer's micro-batches and the
/// ranks' shards share, so that a rank and a micro-batch of the same index cover the same rows.

#include <algorithm>

#include "hattn/core/tensor.hpp"

namespace hattn {

/// Where part i of n items split into `parts` (>= 1) starts (i = parts: n). The first n % parts
/// parts are one item longer: 8 items in 3 parts are 3, 3 and 2.
inline Index even_split_start(Index n, Index parts, Index i) {
  return i * (n / parts) + std::min(i, n % parts);
}

}  // namespace hattn
