#pragma once
/// \file
/// Attention probabilities recovered after an inference pass from the saved queries, keys and
/// log-sum-exps, for pictures of what each attention attends to. Each mixer lays out its own
/// maps (its `maps` function); this file holds the map type and the shared arithmetic.

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "hattn/core/tensor.hpp"
#include "hattn/ops/attention.hpp"

namespace hattn {

/// One head-averaged attention map of one sequence: `probs(i, j)` is how much row i attends to
/// row j (0 where i does not see j), over the sequence's T real rows.
template <class T>
struct AttentionMap {
  std::string name;   ///< e.g. "decoder_block.hier_attn1.leaf" or "...hier_attn2.level2"
  Tensor<T, 2> probs; ///< (T, T)
};

namespace model::detail {

/// The (t, t) head-averaged map of `groups` blocks of queries against their keys under `mask`:
/// query row i of group g sits at row q_row0(g) + i of the sequence; key j covers the rows
/// [first, last) = key_rows(g, j) (one row, or the rows a summary pools: each gets the summary's
/// whole weight, so the picture is at summary resolution). Rows at or past t are left out.
template <class T, class QRow, class KeyRows>
Tensor<T, 2> attention_map(Index t, Rows<const T> q, Rows<const T> k, View<const T, 3> lse, Index heads,
                           ops::Mask mask, QRow q_row0, KeyRows key_rows) {
  Tensor<T, 2> map(t, t);
  map.setZero();
  const Index dh = q.cols / heads;
  const T scale = T(1) / std::sqrt(T(dh));
  for (Index g = 0; g < q.groups; ++g)
    for (Index i = 0; i < q.rows; ++i) {
      const Index qi = q_row0(g) + i;
      if (qi >= t) continue;
      for (Index j = 0; j < ops::detail::visible_keys(mask, i, k.rows); ++j) {
        const auto [first, last] = key_rows(g, j);
        if (first >= t) continue;  // padding rows are visible to real rows only under seed_compat
        T sum = 0;
        for (Index h = 0; h < heads; ++h) {
          T s = 0;
          for (Index c = h * dh; c < (h + 1) * dh; ++c) s += q.row(g, i)[c] * k.row(g, j)[c];
          const T scaled = mask == ops::Mask::notebook ? ops::detail::notebook_score(s * scale, i, j, k.rows) : s * scale;
          sum += std::exp(scaled - lse(g, h, i));
        }
        for (Index r = first; r < std::min(last, t); ++r) map(qi, r) += sum / T(heads);
      }
    }
  return map;
}

}  // namespace model::detail
}  // namespace hattn
