#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/ops/attention.hpp"
#include "support/float_error.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::Rows;
using hattn::View;
using hattn::ops::Mask;
namespace ops = hattn::ops;
namespace test = hattn::test;
namespace fe = hattn::test::fe;

namespace {

// How q, k and v sit in one flat input buffer (a gradient buffer of the same size has the same
// layout, so the same function gives dq, dk and dv).
//  separate: q (G*Tq, C), then k (G*Tk, C), then v (G*Tk, C), each contiguous;
//  fused:    one (G*T, 3C) buffer, q | k | v column slices, blocks of T consecutive rows;
//  siblings: one (2*G*T, 3C) buffer of G sibling pairs of T-row segments; q reads the right
//            segments' q columns, k and v the left segments' k and v columns (the tree's layout).
enum class Layout { separate, fused, siblings };

struct Case {
  Index groups, tq, tk, heads, dh;
  Mask mask;
  Layout layout;
  Index cols() const { return heads * dh; }
  Index input_size() const {
    const Index c = cols();
    switch (layout) {
      case Layout::separate: return groups * tq * c + 2 * groups * tk * c;
      case Layout::fused: return groups * tq * 3 * c;
      case Layout::siblings: return 2 * groups * tq * 3 * c;
    }
    return 0;
  }
  Index out_size() const { return groups * tq * cols(); }
  Index lse_size() const { return groups * heads * tq; }
  std::string mask_name() const {
    if (mask == Mask::none) return ", none";
    if (mask == Mask::causal) return ", causal";
    if (mask == Mask::notebook) return ", notebook";
    return ", summaries " + std::to_string(mask.keys) + " of " + std::to_string(mask.rows);
  }
  std::string describe() const {
    return "G " + std::to_string(groups) + ", Tq " + std::to_string(tq) + ", Tk " + std::to_string(tk) +
           ", heads " + std::to_string(heads) + ", dh " + std::to_string(dh) +
           mask_name() +
           (layout == Layout::separate ? ", separate" : layout == Layout::fused ? ", fused" : ", siblings");
  }
};

template <class T>
std::array<Rows<T>, 3> qkv_rows(const Case& c, T* base) {
  const Index g = c.groups, C = c.cols();
  switch (c.layout) {
    case Layout::separate:
      return {Rows<T>{base, g, c.tq, C, C, c.tq * C}, Rows<T>{base + g * c.tq * C, g, c.tk, C, C, c.tk * C},
              Rows<T>{base + g * c.tq * C + g * c.tk * C, g, c.tk, C, C, c.tk * C}};
    case Layout::fused:
      return {Rows<T>{base, g, c.tq, C, 3 * C, c.tq * 3 * C}, Rows<T>{base + C, g, c.tk, C, 3 * C, c.tk * 3 * C},
              Rows<T>{base + 2 * C, g, c.tk, C, 3 * C, c.tk * 3 * C}};
    case Layout::siblings: {
      const Index s = c.tq, pair = 2 * s * 3 * C;
      return {Rows<T>{base + s * 3 * C, g, s, C, 3 * C, pair}, Rows<T>{base + C, g, s, C, 3 * C, pair},
              Rows<T>{base + 2 * C, g, s, C, 3 * C, pair}};
    }
  }
  return {};
}

template <class T>
Rows<const T> cr(Rows<T> r) {
  return Rows<const T>{r.data, r.groups, r.rows, r.cols, r.row_stride, r.group_stride};
}

template <class T>
Rows<T> contiguous(T* p, Index groups, Index rows, Index cols) {
  return Rows<T>{p, groups, rows, cols, cols, rows * cols};
}

struct Reference {
  std::vector<double> o;          // (G, Tq, C)
  std::vector<double> lse;        // (G, heads, Tq)
  std::vector<double> o_error;    // bounds on a float attention_forward's error, for any GEMM kernel
  std::vector<double> lse_error;
};

// Attention by loops in double: masked scores set to -inf (the notebook's mask: -1e9 added to the
// scores of keys j <= i, every key taking part), then an explicit softmax over all keys.
// With it, the float error bound of each output (tests/support/float_error.hpp), per row over the
// n visible keys (masked probabilities are exact zeros, which add no rounding):
//   score s_j = q . k_j / sqrt(dh): GEMM of length dh, the scale rounded twice and applied once:
//     within gamma_(dh+3) sum |q k_j| / sqrt(dh);
//   softmax of the scores: fe::softmax_row, a float sum of n exps (gamma_(n-1)), reciprocal and
//     product (2u);
//   o_c = sum_j p_j v_jc: GEMM of length n on the computed p: sum_j |p_j err| |v_jc| +
//     gamma_n sum_j (p_j + |p_j err|) |v_jc|;
//   lse = max + log(sum): the row's lse bound, the float log (1 ulp: 2u |log sum|) and add (u |lse|).
template <class T>
Reference naive_attention(Rows<T> q, Rows<T> k, Rows<T> v, Index heads, Mask mask) {
  const Index G = q.groups, tq = q.rows, tk = k.rows, C = q.cols, dh = C / heads;
  const double inf = std::numeric_limits<double>::infinity(), root = std::sqrt(double(dh));
  Reference ref{std::vector<double>(G * tq * C), std::vector<double>(G * heads * tq), std::vector<double>(G * tq * C),
                std::vector<double>(G * heads * tq)};
  std::vector<double> s(tk), s_error(tk);
  for (Index g = 0; g < G; ++g)
    for (Index h = 0; h < heads; ++h)
      for (Index i = 0; i < tq; ++i) {
        // Visible keys: a prefix by the mask's own rule (row i sees summary b when
        // floor(b rows / keys) <= i), every key for the notebook's.
        Index n = tk;
        if (mask.kind == Mask::Kind::prefix)
          while (n > 0 && (n - 1) * mask.rows / mask.keys > i) --n;
        const bool notebook = mask == Mask::notebook;
        for (Index j = 0; j < tk; ++j) {
          const T* qi = q.row(g, i) + h * dh;
          const T* kj = k.row(g, j) + h * dh;
          double dot = 0;
          for (Index c = 0; c < dh; ++c) dot += double(qi[c]) * double(kj[c]);
          s[j] = j >= n ? -inf : dot / root + (notebook && j <= i ? -1e9 : 0.0);
          s_error[j] = fe::dot_bound(dh, fe::abs_dot(qi, 1, kj, 1, dh), 3) / root;
        }
        double top = -inf;
        for (double x : s) top = std::max(top, x);
        double sum = 0;
        for (double x : s) sum += std::exp(x - top);
        const fe::SoftmaxRow sm = fe::softmax_row(std::span<const double>(s.data(), n),
                                                  std::span<const double>(s_error.data(), n),
                                                  fe::gamma(double(n - 1)), 2 * fe::u);
        for (Index c = h * dh; c < (h + 1) * dh; ++c) {
          double acc = 0, err = 0, mag = 0;
          for (Index j = 0; j < tk; ++j) {
            const double vj = double(v.row(g, j)[c]);
            acc += std::exp(s[j] - top) * vj;
            if (j < n) {
              err += sm.p_error[j] * std::abs(vj);
              mag += (sm.p[j] + sm.p_error[j]) * std::abs(vj);
            }
          }
          ref.o[(g * tq + i) * C + c] = acc / sum;
          ref.o_error[(g * tq + i) * C + c] = err + fe::gamma(double(n)) * mag;
        }
        ref.lse[(g * heads + h) * tq + i] = top + std::log(sum);
        ref.lse_error[(g * heads + h) * tq + i] =
            sm.lse_error + 2 * fe::u * std::abs(sm.log_sum) + fe::u * std::abs(sm.lse);
      }
  return ref;
}

// Every entry of a float forward within its bound; returns the worst error / bound.
double check_float(const std::vector<float>& o, const std::vector<float>& lse, const Reference& ref) {
  fe::Worst worst;
  for (std::size_t i = 0; i < o.size(); ++i) {
    INFO("o[" << i << "] " << o[i] << " vs " << ref.o[i] << ", bound " << ref.o_error[i]);
    REQUIRE(worst(o[i], ref.o[i], ref.o_error[i]) <= 1);
  }
  for (std::size_t i = 0; i < lse.size(); ++i) {
    INFO("lse[" << i << "] " << lse[i] << " vs " << ref.lse[i] << ", bound " << ref.lse_error[i]);
    REQUIRE(worst(lse[i], ref.lse[i], ref.lse_error[i]) <= 1);
  }
  return worst.ratio;
}

// Runs attention_forward<T> on inputs laid out as `c` says; returns o (G, Tq, C) and lse.
template <class T>
std::pair<std::vector<T>, std::vector<T>> run_forward(const Case& c, const std::vector<T>& in) {
  std::vector<T> o(c.out_size()), lse(c.lse_size());
  const auto qkv = qkv_rows(c, in.data());
  ops::attention_forward<T>(contiguous(o.data(), c.groups, c.tq, c.cols()), qkv[0], qkv[1], qkv[2],
                            View<T, 3>(lse.data(), c.groups, c.heads, c.tq), c.heads, c.mask);
  return {o, lse};
}

std::vector<Case> reference_cases() {
  std::vector<Case> cases;
  for (Mask mask : {Mask::none, Mask::causal}) {
    cases.push_back({1, 1, 1, 1, 1, mask, Layout::separate});
    cases.push_back({2, 7, 7, 3, 5, mask, Layout::separate});
    cases.push_back({5, 3, 3, 2, 1, mask, Layout::fused});
    cases.push_back({3, 70, 70, 2, 3, mask, Layout::fused});
    cases.push_back({1, 130, 130, 3, 8, mask, Layout::separate});
    cases.push_back({4, 65, 65, 1, 7, mask, Layout::siblings});
    cases.push_back({2, 13, 13, 3, 6, mask, Layout::siblings});
    // Tq != Tk: queries shorter and longer than the keys (causal is top-left aligned).
    cases.push_back({2, 5, 11, 2, 4, mask, Layout::separate});
    cases.push_back({3, 130, 9, 1, 2, mask, Layout::separate});
    cases.push_back({1, 70, 200, 2, 5, mask, Layout::separate});
  }
  // Summaries: k pooled keys for S query rows, k dividing S or not, over several tiles; k = S is
  // the causal mask.
  cases.push_back({2, 8, 3, 2, 4, Mask::summaries(3, 8), Layout::separate});
  cases.push_back({3, 70, 5, 1, 6, Mask::summaries(5, 70), Layout::separate});
  cases.push_back({1, 130, 7, 2, 3, Mask::summaries(7, 130), Layout::separate});
  cases.push_back({2, 6, 6, 2, 2, Mask::summaries(6, 6), Layout::separate});
  return cases;
}

}  // namespace

TEST_CASE("attention forward and lse match a naive masked softmax, across shapes and layouts", "[attention]") {
  for (const Case& c : reference_cases()) {
    INFO(c.describe());
    const auto in = test::uniform(c.input_size(), 1 + c.groups * 7 + c.tq, -1.5, 1.5);
    const auto qkv = qkv_rows(c, in.data());
    const Reference ref = naive_attention(qkv[0], qkv[1], qkv[2], c.heads, c.mask);
    const auto [o, lse] = run_forward<double>(c, in);
    for (std::size_t i = 0; i < o.size(); ++i) REQUIRE(o[i] == Approx(ref.o[i]).epsilon(1e-12).margin(1e-12));
    for (std::size_t i = 0; i < lse.size(); ++i) REQUIRE(lse[i] == Approx(ref.lse[i]).epsilon(1e-12).margin(1e-12));
  }
}

TEST_CASE("the notebook's mask adds -1e9 to the scores of keys j <= i, and a fully masked row is uniform in float",
          "[attention][seed_compat]") {
  for (const Case& c : {Case{2, 7, 7, 2, 3, Mask::notebook, Layout::separate},
                        Case{1, 70, 70, 1, 4, Mask::notebook, Layout::fused}}) {
    INFO(c.describe());
    const auto in = test::uniform(c.input_size(), 5 + c.tq, -1.5, 1.5);
    const auto qkv = qkv_rows(c, in.data());
    const Reference ref = naive_attention(qkv[0], qkv[1], qkv[2], c.heads, c.mask);
    const auto [o, lse] = run_forward<double>(c, in);
    // In double, s - 1e9 keeps s to 1e9 ulp(1) = 1.2e-7 absolute: a fully masked row's
    // probabilities are exp of differences carrying that rounding.
    for (std::size_t i = 0; i < o.size(); ++i) REQUIRE(o[i] == Approx(ref.o[i]).epsilon(1e-6).margin(1e-6));
    // The lse of a fully masked row (the last: i + 1 >= Tk) is stored relative to -1e9.
    for (std::size_t i = 0; i < lse.size(); ++i) {
      const bool last = Index(i) % c.tq == c.tq - 1;
      REQUIRE(lse[i] + (last ? -1e9 : 0.0) == Approx(ref.lse[i]).epsilon(1e-12));
    }

    // Float: every score of the last row rounds to exactly -1e9, so its output is the mean of v and
    // its lse, stored relative to -1e9, log(Tk).
    const std::vector<float> inf(in.begin(), in.end());
    const auto fqkv = qkv_rows(c, inf.data());
    const auto [fo, flse] = run_forward<float>(c, inf);
    const Index last = c.tq - 1, C = c.cols();
    for (Index g = 0; g < c.groups; ++g)
      for (Index col = 0; col < C; ++col) {
        double mean = 0;
        for (Index j = 0; j < c.tk; ++j) mean += fqkv[2].row(g, j)[col];
        mean /= double(c.tk);
        REQUIRE(fo[std::size_t((g * c.tq + last) * C + col)] == Approx(mean).epsilon(1e-5).margin(1e-6));
      }
    for (Index g = 0; g < c.groups; ++g)
      for (Index h = 0; h < c.heads; ++h)
        REQUIRE(flse[std::size_t((g * c.heads + h) * c.tq + last)] == Approx(std::log(double(c.tk))).epsilon(1e-6));
  }
}

TEST_CASE("attention in float is within its float error bound of the double reference", "[attention]") {
  fe::Worst worst;
  for (const Case& c : reference_cases()) {
    INFO(c.describe());
    const auto in = test::uniform(c.input_size(), 2 + c.groups + c.tk, -1.5, 1.5);
    const std::vector<float> inf(in.begin(), in.end());
    const auto qkv = qkv_rows(c, inf.data());
    const Reference ref = naive_attention(qkv[0], qkv[1], qkv[2], c.heads, c.mask);
    const auto [o, lse] = run_forward<float>(c, inf);
    // Each o and lse within its bound: scores' GEMM, softmax, weighted sum (naive_attention).
    worst.ratio = std::max(worst.ratio, check_float(o, lse, ref));
  }
  worst.print("attention float, reference cases");
}

TEST_CASE("attention stays finite and exact for large scores", "[attention]") {
  // Scores above 100: exp of an unshifted score would overflow float (and lose double precision).
  const Case c{2, 70, 70, 2, 4, Mask::causal, Layout::fused};
  const auto draw = test::uniform(c.input_size(), 3, -12.0, 12.0);
  const std::vector<float> inf(draw.begin(), draw.end());
  const std::vector<double> in(inf.begin(), inf.end());  // the same values in both precisions
  const auto qkv = qkv_rows(c, in.data());
  const Reference ref = naive_attention(qkv[0], qkv[1], qkv[2], c.heads, c.mask);
  REQUIRE(*std::max_element(ref.lse.begin(), ref.lse.end()) > 100.0);
  const auto [o, lse] = run_forward<double>(c, in);
  for (std::size_t i = 0; i < o.size(); ++i) REQUIRE(o[i] == Approx(ref.o[i]).epsilon(1e-12).margin(1e-12));
  for (std::size_t i = 0; i < lse.size(); ++i) REQUIRE(lse[i] == Approx(ref.lse[i]).epsilon(1e-12).margin(1e-12));
  const auto [of, lsef] = run_forward<float>(c, inf);
  // The same bound: large scores only scale the scores' GEMM term and the u |s - max| of the shift.
  fe::Worst worst{check_float(of, lsef, ref)};
  worst.print("attention float, large scores");
}

TEST_CASE("attention writes only its output rows and columns, and lse is optional", "[attention]") {
  // o goes into the right segments of sibling pairs in a buffer wider than C, like the tree's
  // output; left segments and the extra columns must keep their sentinel.
  for (Mask mask : {Mask::none, Mask::causal}) {
    const Case c{3, 70, 70, 2, 3, mask, Layout::siblings};
    const Index C = c.cols(), width = C + 3, s = c.tq;
    const auto in = test::uniform(c.input_size(), 4);
    const auto qkv = qkv_rows(c, in.data());
    const double sentinel = 12345.0;
    std::vector<double> out(2 * c.groups * s * width, sentinel);
    Rows<double> o{out.data() + s * width, c.groups, s, C, width, 2 * s * width};
    ops::attention_forward<double>(o, qkv[0], qkv[1], qkv[2], {}, c.heads, mask);
    const auto expected = run_forward<double>(c, in).first;
    for (Index g = 0; g < c.groups; ++g)
      for (Index r = 0; r < 2 * s; ++r)
        for (Index col = 0; col < width; ++col) {
          const double got = out[(g * 2 * s + r) * width + col];
          if (r >= s && col < C) {
            REQUIRE(got == expected[(g * s + r - s) * C + col]);  // bitwise: lse storage changes nothing
          } else {
            REQUIRE(got == sentinel);
          }
        }
  }
}

TEST_CASE("attention gradients pass central differences in double", "[attention][gradcheck]") {
  struct GradCase {
    Case c;
    std::array<bool, 3> want;  // dq, dk, dv requested (separate layout only)
  };
  const std::vector<GradCase> cases = {
      {{1, 1, 1, 1, 1, Mask::none, Layout::separate}, {true, true, true}},
      {{2, 5, 5, 2, 3, Mask::causal, Layout::separate}, {true, true, true}},
      {{3, 5, 9, 3, 2, Mask::none, Layout::separate}, {true, false, true}},
      {{2, 9, 4, 1, 5, Mask::causal, Layout::separate}, {false, true, false}},
      {{1, 70, 70, 2, 3, Mask::causal, Layout::fused}, {true, true, true}},
      {{2, 67, 67, 1, 3, Mask::none, Layout::fused}, {true, true, true}},
      {{2, 66, 66, 2, 2, Mask::causal, Layout::siblings}, {true, true, true}},
      {{3, 6, 6, 3, 1, Mask::none, Layout::siblings}, {true, true, true}},
      {{2, 8, 3, 2, 2, Mask::summaries(3, 8), Layout::separate}, {true, true, true}},
      {{1, 70, 4, 1, 3, Mask::summaries(4, 70), Layout::separate}, {true, true, true}},
      {{2, 5, 5, 1, 3, Mask::notebook, Layout::separate}, {true, true, true}},
      {{1, 66, 66, 2, 2, Mask::notebook, Layout::fused}, {true, true, true}},
  };
  for (const auto& [c, want] : cases) {
    INFO(c.describe());
    const auto in = test::uniform(c.input_size(), 20 + c.tq);
    test::OpUnderTest op;
    const bool separate = c.layout == Layout::separate;
    if (separate) {
      // Three arguments, so that a gradient can be left out.
      const Index nq = c.groups * c.tq * c.cols(), nk = c.groups * c.tk * c.cols();
      op.args = {{"q", std::vector<double>(in.begin(), in.begin() + nq), want[0]},
                 {"k", std::vector<double>(in.begin() + nq, in.begin() + nq + nk), want[1]},
                 {"v", std::vector<double>(in.begin() + nq + nk, in.end()), want[2]}};
    } else {
      op.args = {{"qkv", in}};
    }
    // The three Rows over the argument pointers (values or gradients).
    const auto views = [c, separate](const std::vector<double*>& p) {
      if (!separate) return qkv_rows(c, p[0]);
      return std::array<Rows<double>, 3>{contiguous(p[0], c.groups, c.tq, c.cols()),
                                         contiguous(p[1], c.groups, c.tk, c.cols()),
                                         contiguous(p[2], c.groups, c.tk, c.cols())};
    };
    op.out_size = c.out_size();
    op.forward = [&](const std::vector<double*>& a, double* out) {
      const auto x = views(a);
      ops::attention_forward<double>(contiguous(out, c.groups, c.tq, c.cols()), cr(x[0]), cr(x[1]), cr(x[2]), {},
                                     c.heads, c.mask);
    };
    op.backward = [&](const std::vector<double*>& a, const double*, const double* dout,
                      const std::vector<double*>& grads) {
      const auto x = views(a);
      std::vector<double> o(c.out_size()), lse(c.lse_size());
      const View<double, 3> lse_view(lse.data(), c.groups, c.heads, c.tq);
      ops::attention_forward<double>(contiguous(o.data(), c.groups, c.tq, c.cols()), cr(x[0]), cr(x[1]), cr(x[2]),
                                     lse_view, c.heads, c.mask);
      std::array<Rows<double>, 3> d{};
      if (separate) {
        const auto all = views({grads[0] ? grads[0] : a[0], grads[1] ? grads[1] : a[1], grads[2] ? grads[2] : a[2]});
        for (int i = 0; i < 3; ++i) d[i] = grads[i] ? all[i] : Rows<double>{};
      } else {
        d = qkv_rows(c, grads[0]);
      }
      ops::attention_backward<double>(contiguous(dout, c.groups, c.tq, c.cols()), cr(x[0]), cr(x[1]), cr(x[2]),
                                      contiguous(static_cast<const double*>(o.data()), c.groups, c.tq, c.cols()),
                                      lse_view, c.heads, c.mask, d[0], d[1], d[2]);
    };
    // The notebook's scores sit at -1e9, where a double holds them to ulp(1e9) = 1.2e-7
    // absolute: each loss evaluation carries about (scores) 1.2e-7 max|dL/ds| of rounding, a few
    // 1e-6 here, which a central difference divides by 2h. So that mask is checked with h = 1e-2
    // (rounding about 1.5e-4; truncation h^2 times the third derivative / 6, measured under 1e-5 relative) and an
    // absolute tolerance of 1e-3 (floor 1): a wrong dS rule misses by O(1).
    if (c.mask == Mask::notebook) {
      test::check_op(op, {.step = 1e-2, .tolerance = 1e-3, .floor = 1});
    } else {
      test::check_op(op);
    }
  }
}

TEST_CASE("attention is causal: later rows never change earlier outputs", "[attention][causal]") {
  for (Layout layout : {Layout::fused, Layout::siblings}) {
    const Case c{2, 130, 130, 2, 8, Mask::causal, layout};
    const auto base_d = test::uniform(c.input_size(), 30);
    const std::vector<float> base(base_d.begin(), base_d.end());
    const auto [o0, lse0] = run_forward<float>(c, base);
    for (Index t : {Index{1}, Index{37}, Index{64}, Index{65}, Index{129}}) {
      INFO(c.describe() << ", rows >= " << t << " changed");
      // Change q, k and v in every row >= t of every group.
      auto changed = base;
      const auto qkv = qkv_rows(c, changed.data());
      const auto noise = test::uniform(c.input_size(), 31 + t);
      for (const auto& r : qkv)
        for (Index g = 0; g < c.groups; ++g)
          for (Index i = t; i < r.rows; ++i)
            for (Index col = 0; col < r.cols; ++col) r.row(g, i)[col] += float(noise[(g * r.rows + i) * r.cols + col]);
      const auto [o1, lse1] = run_forward<float>(c, changed);
      Index later_changed = 0;
      for (Index g = 0; g < c.groups; ++g) {
        for (Index i = 0; i < c.tq; ++i)
          for (Index col = 0; col < c.cols(); ++col) {
            const Index at = (g * c.tq + i) * c.cols() + col;
            if (i < t) {
              REQUIRE(o1[at] == o0[at]);
            } else {
              later_changed += o1[at] != o0[at];
            }
          }
        for (Index h = 0; h < c.heads; ++h)
          for (Index i = 0; i < t; ++i) REQUIRE(lse1[(g * c.heads + h) * c.tq + i] == lse0[(g * c.heads + h) * c.tq + i]);
      }
      REQUIRE(later_changed > 0);  // the change was visible where the mask allows it
    }
  }
}

TEST_CASE("attention forward and backward are bitwise identical with 1 and 2 threads", "[attention][threads]") {
  // The last case makes the per-task products large enough for hattn::gemm to split them into
  // nested parallel tiles, so a thread can pick up another attention task mid-task.
  for (const Case& c : {Case{3, 200, 200, 4, 16, Mask::causal, Layout::fused},
                        Case{3, 200, 200, 4, 16, Mask::none, Layout::siblings},
                        Case{1, 1024, 1024, 2, 64, Mask::none, Layout::fused}}) {
    INFO(c.describe());
    const auto in_d = test::uniform(c.input_size(), 40);
    const auto dout_d = test::uniform(c.out_size(), 41);
    const std::vector<float> in(in_d.begin(), in_d.end()), dout(dout_d.begin(), dout_d.end());
    const auto run = [&] {
      auto [o, lse] = run_forward<float>(c, in);
      std::vector<float> grad(c.input_size(), 0.f);
      const auto x = qkv_rows(c, in.data());
      const auto d = qkv_rows(c, grad.data());
      ops::attention_backward<float>(contiguous(dout.data(), c.groups, c.tq, c.cols()), x[0], x[1], x[2],
                                     contiguous(static_cast<const float*>(o.data()), c.groups, c.tq, c.cols()),
                                     View<const float, 3>(lse.data(), c.groups, c.heads, c.tq), c.heads, c.mask,
                                     d[0], d[1], d[2]);
      o.insert(o.end(), lse.begin(), lse.end());
      o.insert(o.end(), grad.begin(), grad.end());
      return o;
    };
    const auto one = test::with_threads(1, run);
    const auto two = test::with_threads(2, run);
    REQUIRE(one == two);
    if (c.tq == 1024) {
      // The nested path also computes the right thing: spot-check rows against the reference.
      const auto qkv = qkv_rows(c, in.data());
      const Reference ref = naive_attention(qkv[0], qkv[1], qkv[2], c.heads, c.mask);
      // Each sampled o within its float error bound (naive_attention).
      fe::Worst worst;
      for (Index i = 0; i < c.tq * c.cols(); i += 97) {
        INFO("o[" << i << "] " << one[i] << " vs " << ref.o[i] << ", bound " << ref.o_error[i]);
        REQUIRE(worst(one[i], ref.o[i], ref.o_error[i]) <= 1);
      }
      worst.print("attention float, nested GEMM path");
    }
  }
}

TEST_CASE("attention scratch nests on one thread and is reused, not reallocated", "[attention][scratch]") {
  // A thread waiting inside a nested parallel_for may run another attention task; that task must
  // get its own buffer, while sequential tasks reuse the same one.
  float* first = nullptr;
  {
    ops::detail::Scratch<float> outer(100);
    first = outer.data();
    std::fill(first, first + 100, 1.f);
    {
      ops::detail::Scratch<float> inner(300);
      REQUIRE(inner.data() != first);
      std::fill(inner.data(), inner.data() + 300, 2.f);
    }
    REQUIRE(std::count(first, first + 100, 1.f) == 100);
  }
  ops::detail::Scratch<float> again(80);
  REQUIRE(again.data() == first);
}

TEST_CASE("attention on a tape records a node whose backward equals attention_backward", "[attention][tape]") {
  const Case c{2, 70, 70, 2, 3, Mask::causal, Layout::fused};
  const auto in = test::uniform(c.input_size(), 50);
  const auto dout = test::uniform(c.out_size(), 51);
  std::vector<double> o(c.out_size()), lse(c.lse_size()), grad(c.input_size(), 0.5), dout_buf = dout;
  const auto qkv = qkv_rows(c, const_cast<double*>(in.data()));
  const auto g = qkv_rows(c, grad.data());
  const Rows<double> ov = contiguous(o.data(), c.groups, c.tq, c.cols());
  const Rows<double> og = contiguous(dout_buf.data(), c.groups, c.tq, c.cols());
  const View<double, 3> lse_view(lse.data(), c.groups, c.heads, c.tq);

  static_assert(hattn::TapeNode<ops::AttentionNode<double>>);
  hattn::Tape tape;
  ops::attention<double>(&tape, {ov, og}, {qkv[0], g[0]}, {qkv[1], g[1]}, {qkv[2], {}}, lse_view, c.heads, c.mask);
  REQUIRE(tape.size() == 1);
  const auto [o_ref, lse_ref] = run_forward<double>(c, in);
  REQUIRE(o == o_ref);
  REQUIRE(lse == lse_ref);
  tape.backward();

  std::vector<double> expected(c.input_size(), 0.5);
  const auto e = qkv_rows(c, expected.data());
  ops::attention_backward<double>(cr(og), cr(qkv[0]), cr(qkv[1]), cr(qkv[2]), cr(ov), lse_view, c.heads, c.mask, e[0],
                                  e[1], {});
  REQUIRE(grad == expected);
  Index moved = 0;
  for (double x : grad) moved += x != 0.5;
  REQUIRE(moved > 0);

  // No output gradient: nothing to record. Without a tape: forward only.
  hattn::Tape empty;
  ops::attention<double>(&empty, {ov, {}}, {qkv[0], g[0]}, {qkv[1], g[1]}, {qkv[2], g[2]}, lse_view, c.heads, c.mask);
  REQUIRE(empty.size() == 0);
  std::fill(o.begin(), o.end(), 0.0);
  ops::attention<double>(nullptr, {ov, og}, {qkv[0], g[0]}, {qkv[1], g[1]}, {qkv[2], g[2]}, {}, c.heads, c.mask);
  REQUIRE(o == o_ref);
  REQUIRE_THROWS_WITH(ops::attention<double>(&tape, {ov, og}, {qkv[0], g[0]}, {qkv[1], g[1]}, {qkv[2], g[2]}, {},
                                             c.heads, c.mask),
                      "attention: lse must be stored when recording on a tape");
}

TEST_CASE("attention rejects bad shapes, naming the op and the shapes", "[attention][errors]") {
  std::vector<float> buf(4096);
  float* p = buf.data();
  const auto rows = [p](Index g, Index r, Index c) { return Rows<const float>{p, g, r, c, c, r * c}; };
  const auto out = [p](Index g, Index r, Index c) { return Rows<float>{p + 2048, g, r, c, c, r * c}; };
  const View<float, 3> lse(p + 3072, 2, 2, 4);
  const auto q = rows(2, 4, 6), k = rows(2, 5, 6), v = rows(2, 5, 6);
  const auto o = out(2, 4, 6);

  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, k, v, lse, 0, Mask::none),
                      "attention_forward: heads must be >= 1, got 0");
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(out(2, 0, 6), rows(2, 0, 6), k, v, {}, 2, Mask::none),
                      "attention_forward: zero-sized dimension: q (2, 0, 6), k (2, 5, 6), v (2, 5, 6)");
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(out(0, 4, 6), rows(0, 4, 6), rows(0, 5, 6), rows(0, 5, 6), {},
                                                    2, Mask::none),
                      "attention_forward: zero-sized dimension: q (0, 4, 6), k (0, 5, 6), v (0, 5, 6)");
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, k, rows(2, 5, 0), {}, 2, Mask::none),
                      "attention_forward: zero-sized dimension: q (2, 4, 6), k (2, 5, 6), v (2, 5, 0)");
  const std::string want = " (want q and o (G, Tq, C), k and v (G, Tk, C))";
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, rows(3, 5, 6), rows(3, 5, 6), lse, 2, Mask::none),
                      "attention_forward: shape mismatch: q (2, 4, 6), k (3, 5, 6), v (3, 5, 6), o (2, 4, 6)" + want);
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, k, rows(2, 4, 6), lse, 2, Mask::none),
                      "attention_forward: shape mismatch: q (2, 4, 6), k (2, 5, 6), v (2, 4, 6), o (2, 4, 6)" + want);
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, rows(2, 5, 4), rows(2, 5, 4), lse, 2, Mask::none),
                      "attention_forward: shape mismatch: q (2, 4, 6), k (2, 5, 4), v (2, 5, 4), o (2, 4, 6)" + want);
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(out(2, 3, 6), q, k, v, lse, 2, Mask::none),
                      "attention_forward: shape mismatch: q (2, 4, 6), k (2, 5, 6), v (2, 5, 6), o (2, 3, 6)" + want);
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(out(1, 4, 6), q, k, v, lse, 2, Mask::none),
                      "attention_forward: shape mismatch: q (2, 4, 6), k (2, 5, 6), v (2, 5, 6), o (1, 4, 6)" + want);
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, k, v, {}, 4, Mask::none),
                      "attention_forward: 6 columns do not split into 4 heads: q (2, 4, 6)");
  auto k_short = k;
  k_short.row_stride = 5;
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, k_short, v, lse, 2, Mask::none),
                      "attention_forward: row stride 5 is smaller than a row: k (2, 5, 6)");
  REQUIRE_THROWS_WITH(ops::attention_forward<float>(o, q, k, v, View<float, 3>(p + 3072, 2, 3, 4), 2, Mask::none),
                      "attention_forward: lse (2, 3, 4) is not (G, heads, Tq) = (2, 2, 4)");
  REQUIRE_NOTHROW(ops::attention_forward<float>(o, q, k, v, lse, 2, Mask::causal));
  REQUIRE_NOTHROW(ops::attention_forward<float>(o, q, k, v, {}, 3, Mask::none));

  // Backward: the forward checks, lse required, and the gradients' shapes.
  const Rows<const float> oc = cr(o), dout = cr(out(2, 4, 6));
  Rows<float> dq{p + 1024, 2, 4, 6, 6, 24}, dk{p + 1100, 2, 5, 6, 6, 30}, dv{p + 1200, 2, 5, 6, 6, 30};
  REQUIRE_THROWS_WITH(ops::attention_backward<float>(dout, q, k, v, oc, {}, 2, Mask::none, dq, dk, dv),
                      "attention_backward: lse none is not (G, heads, Tq) = (2, 2, 4)");
  REQUIRE_THROWS_WITH(ops::attention_backward<float>(dout, q, k, v, oc, lse, 4, Mask::none, dq, dk, dv),
                      "attention_backward: 6 columns do not split into 4 heads: q (2, 4, 6)");
  REQUIRE_THROWS_WITH(ops::attention_backward<float>(cr(out(2, 5, 6)), q, k, v, oc, lse, 2, Mask::none, dq, dk, dv),
                      "attention_backward: gradient shape mismatch: dout (2, 5, 6), dq (2, 4, 6) for q (2, 4, 6), "
                      "dk (2, 5, 6), dv (2, 5, 6) for k and v (2, 5, 6)");
  REQUIRE_THROWS_WITH(ops::attention_backward<float>(Rows<const float>{}, q, k, v, oc, lse, 2, Mask::none, dq, dk, dv),
                      "attention_backward: gradient shape mismatch: dout none, dq (2, 4, 6) for q (2, 4, 6), "
                      "dk (2, 5, 6), dv (2, 5, 6) for k and v (2, 5, 6)");
  REQUIRE_THROWS_WITH(ops::attention_backward<float>(dout, q, k, v, oc, lse, 2, Mask::none, {}, dq, {}),
                      "attention_backward: gradient shape mismatch: dout (2, 4, 6), dq none for q (2, 4, 6), "
                      "dk (2, 4, 6), dv none for k and v (2, 5, 6)");
  auto dv_short = dv;
  dv_short.row_stride = 4;
  REQUIRE_THROWS_WITH(ops::attention_backward<float>(dout, q, k, v, oc, lse, 2, Mask::none, dq, dk, dv_short),
                      "attention_backward: row stride 4 is smaller than a row: dv (2, 5, 6)");
  REQUIRE_NOTHROW(ops::attention_backward<float>(dout, q, k, v, oc, lse, 2, Mask::none, dq, {}, {}));
}
