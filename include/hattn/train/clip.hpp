#pragma once
/// \file
/// The global gradient norm and clipping by it (torch.nn.utils.clip_grad_norm_).

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "hattn/core/parallel.hpp"
#include "hattn/model/parameters.hpp"

namespace hattn {

namespace detail {

/// Elements per task of the gradient reductions; a constant, so the partition (and the rounding of
/// the sums) never depends on the thread count.
inline constexpr Index grad_block = 1 << 14;

/// Calls `f(b, p, begin, end)` for every block b: elements [begin, end) (at most grad_block) of a
/// trainable tensor p of `params`, blocks numbered in registry order then element order; in
/// parallel. Returns the number of blocks. Block b is always the same range, so per-block results
/// combined in block order are bitwise reproducible.
template <class T, class F>
Index for_each_grad_block(const std::vector<Parameter<T>>& params, F&& f) {
  std::vector<std::pair<std::size_t, Index>> blocks;  // (registry entry, first element)
  for (std::size_t k = 0; k < params.size(); ++k)
    if (params[k].trainable())
      for (Index i = 0; i < params[k].size(); i += grad_block) blocks.emplace_back(k, i);
  parallel_for(Index(blocks.size()), [&](Index b) {
    const auto [k, begin] = blocks[std::size_t(b)];
    f(b, params[k], begin, std::min(params[k].size(), begin + grad_block));
  });
  return Index(blocks.size());
}

}  // namespace detail

/// The L2 norm of all trainable gradients of `params` taken together, as if concatenated. Squares
/// are summed in double over fixed blocks, and the block sums are added in registry order: the
/// result is bitwise the same for any thread count. Fixed tensors (no gradient) are skipped.
/// A NaN or infinite gradient gives a NaN or infinite norm.
template <class T>
double grad_norm(const std::vector<Parameter<T>>& params) {
  Index blocks = 0;
  for (const auto& p : params)
    if (p.trainable()) blocks += (p.size() + detail::grad_block - 1) / detail::grad_block;
  std::vector<double> partial(std::size_t(blocks), 0.0);  // (blocks) sums of squares
  detail::for_each_grad_block(params, [&](Index b, const Parameter<T>& p, Index begin, Index end) {
    double s = 0;
    for (Index i = begin; i < end; ++i) s += double(p.grad[i]) * double(p.grad[i]);
    partial[std::size_t(b)] = s;
  });
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

/// Multiplies every trainable gradient of `params` by `factor` (bitwise the same for any thread count).
template <class T>
void scale_grads(const std::vector<Parameter<T>>& params, double factor) {
  const T f = T(factor);
  detail::for_each_grad_block(params, [&](Index, const Parameter<T>& p, Index begin, Index end) {
    for (Index i = begin; i < end; ++i) p.grad[i] *= f;
  });
}

/// Clips the global gradient norm as torch.nn.utils.clip_grad_norm_(params, max_norm) does:
/// norm = grad_norm(params); coef = max_norm / (norm + 1e-6); when coef < 1 every trainable
/// gradient is multiplied by coef (cast to T), otherwise none changes. Returns the norm before
/// clipping. `max_norm <= 0` disables clipping (the norm is still computed and returned).
/// A non-finite norm is returned and the gradients are left as they are (torch would multiply
/// them by NaN); callers treat it as a failed step.
template <class T>
double clip_grad_norm(const std::vector<Parameter<T>>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (max_norm <= 0 || !std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1) scale_grads(params, coef);
  return norm;
}

}  // namespace hattn
