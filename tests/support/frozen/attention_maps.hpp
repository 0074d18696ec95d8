#pragma once
/// \file
/// FROZEN: include/hattn/model/attention_maps.hpp as of commit 314ec1c, moved to namespace hattn::frozen (never edit;
/// tests/model/test_frozen_model.cpp compares today's model layer with it, bitwise).
///
/// Attention probabilities of a hierarchical attention, recovered after an inference pass from the
/// saved queries, keys and log-sum-exps, for pictures of what each level attends to.

#include <cmath>
#include <string>
#include <vector>

#include "hattn/config.hpp"
#include "hattn/core/tensor.hpp"
#include "support/frozen/hierarchy.hpp"

namespace hattn::frozen {

/// One head-averaged attention map of one sequence: `probs(i, j)` is how much row i attends to
/// row j (0 where i does not see j), over the sequence's T real rows.
template <class T>
struct AttentionMap {
  std::string name;   ///< e.g. "decoder_block.hier_attn1.leaf" or "...hier_attn2.level2"
  Tensor<T, 2> probs; ///< (T, T)
};

namespace model {

namespace detail {

/// Adds the head-averaged probabilities of `groups` blocks of queries against their keys into
/// `map`: query row i of group g sits at row q_row0(g) + i of the sequence, key j at k_row0(g) + j.
template <class T, class QRow, class KRow>
void add_maps(Tensor<T, 2>& map, Rows<const T> q, Rows<const T> k, View<const T, 3> lse, Index heads,
              bool causal, QRow q_row0, KRow k_row0) {
  const Index dh = q.cols / heads, t = map.dimension(0);
  const T scale = T(1) / std::sqrt(T(dh));
  for (Index g = 0; g < q.groups; ++g)
    for (Index i = 0; i < q.rows; ++i) {
      const Index qi = q_row0(g) + i;
      if (qi >= t) continue;
      for (Index j = 0; j < (causal ? i + 1 : k.rows); ++j) {
        const Index kj = k_row0(g) + j;
        if (kj >= t) continue;  // padding rows are never visible to real rows; kept for clarity
        T sum = 0;
        for (Index h = 0; h < heads; ++h) {
          T s = 0;
          for (Index c = h * dh; c < (h + 1) * dh; ++c) s += q.row(g, i)[c] * k.row(g, j)[c];
          sum += std::exp(s * scale - lse(g, h, i));
        }
        map(qi, kj) += sum / T(heads);
      }
    }
}

}  // namespace detail

/// The leaf map and one map per level of a hierarchical attention's last inference pass, for
/// sequence 0 of the batch (T real rows, Tp padded). Maps are named `<prefix>.leaf`,
/// `<prefix>.level<l>`.
template <class T, int L>
std::vector<AttentionMap<T>> hier_attention_maps(const HierActs<T, L>& a, const std::string& prefix,
                                                 Index T_, Index Tp, Index heads, NodeMask nm) {
  std::vector<AttentionMap<T>> maps;
  const Index d = a.att.value.dim(1), C = Tp >> L;
  const auto as_const = [](Rows<T> r) { return Rows<const T>(r); };
  {
    Tensor<T, 2> m(T_, T_);
    m.setZero();
    const Index chunks = Index{1} << L;  // sequence 0's groups are the first 2^L
    const RowsVar<T> q = blocks(a.qkv, C, 0, d), k = blocks(a.qkv, C, d, d);
    Rows<const T> qs = as_const(q.value), ks = as_const(k.value);
    qs.groups = ks.groups = chunks;
    detail::add_maps<T>(m, qs, ks, View<const T, 3>(a.lse), heads, true,
                        [&](Index g) { return g * C; }, [&](Index g) { return g * C; });
    maps.push_back({prefix + ".leaf", std::move(m)});
  }
  for (int l = 0; l < L; ++l) {
    const LevelActs<T>& v = a.levels[l];
    const Index S = C << l, pairs = Tp / (2 * S);  // sequence 0's pairs come first
    Tensor<T, 2> m(T_, T_);
    m.setZero();
    Rows<const T> qs = as_const(blocks(v.q, S, 0, d).value), ks = as_const(blocks(v.kv, S, 0, d).value);
    qs.groups = ks.groups = pairs;
    detail::add_maps<T>(m, qs, ks, View<const T, 3>(v.lse), heads, nm == NodeMask::aligned,
                        [&](Index p) { return p * 2 * S + S; }, [&](Index p) { return p * 2 * S; });
    maps.push_back({prefix + ".level" + std::to_string(l), std::move(m)});
  }
  return maps;
}

}  // namespace model
}  // namespace hattn::frozen
