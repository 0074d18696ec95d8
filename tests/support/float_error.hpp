#pragma once
// Float error bounds for the tests' float-against-exact comparisons, the same for every correct
// GEMM kernel and summation order (Higham, "Accuracy and Stability of Numerical Algorithms",
// 2nd ed., chapters 2 and 3): a correctly rounded float operation has relative error at most
// u = 2^-24, and a float sum of n products, in any order and with or without FMA, is within
// gamma_n sum |a_i b_i| of the exact sum, gamma_n = n u / (1 - n u). The exact values are computed
// in double from the float operands the code under test saw.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "hattn/core/tensor.hpp"

namespace hattn::test::fe {

/// Unit roundoff of float, 2^-24.
inline constexpr double u = 0x1p-24;
/// Unit roundoff of double, 2^-53.
inline constexpr double u_double = 0x1p-53;

/// gamma_n = n unit / (1 - n unit) (Higham 3.1): a product of n factors (1 + delta_i), each
/// |delta_i| <= unit, is 1 + theta with |theta| <= gamma_n. requires: n unit < 1.
constexpr double gamma(double n, double unit = u) { return n * unit / (1 - n * unit); }

/// sum_i |a_i b_i| over n terms (strides sa, sb), in double: the magnitude a dot product's error
/// bound scales with.
template <class A, class B>
double abs_dot(const A* a, Index sa, const B* b, Index sb, Index n) {
  double s = 0;
  for (Index i = 0; i < n; ++i) s += std::abs(double(a[i * sa]) * double(b[i * sb]));
  return s;
}

/// Bound on the error of a float dot product or GEMM entry of reduction length n:
/// gamma_(n + roundings) abs_sum, abs_sum = sum |a_i b_i| (Higham 3.1). `roundings` counts what
/// each term goes through beyond its product and the sum: an alpha or a rounded scale adds one;
/// a bias or beta C term (its magnitude added to abs_sum) is one more term, also one.
inline double dot_bound(Index n, double abs_sum, int roundings = 0) {
  return gamma(double(n + roundings)) * abs_sum;
}

/// Exact softmax and log-sum-exp of one row, with bounds on a float evaluation's error.
struct SoftmaxRow {
  std::vector<double> p;        ///< exact softmax of x
  std::vector<double> p_error;  ///< bound on |computed p_j - p_j|
  double lse = 0;               ///< exact log sum_j exp(x_j)
  double log_sum = 0;           ///< lse - max_j x_j: the argument of the final log
  double lse_error = 0;         ///< bound on |computed lse - lse| before the final log and add round
};

/// Bounds for a softmax row computed as every hattn softmax does: t_j = fl(x_j - max) (error
/// u |x_j - max|), e_j = exp(t_j) within 1 ulp (2u relative) or FLT_MIN absolute (underflow),
/// S = sum e_j with relative error `sum_error`, p_j = e_j / S with relative error
/// `normalize_error` (2u for a float reciprocal and a product). `x` holds the exact inputs (-inf:
/// masked, p = 0), `x_error` bounds on the inputs' own errors (empty: exact inputs), e.g. a
/// score's GEMM bound. Relative errors a_j of the e_j move p_j by p_j (a_j - sum_k p_k a_k) and
/// lse by sum_k p_k a_k, so to first order
///   |p_j err| <= p_j (a_j + sum_k p_k a_k + sum_error + normalize_error) + FLT_MIN,
///   |lse err| <= sum_k p_k a_k + sum_error,  a_j = x_error_j + u |x_j - max| + 2u.
/// requires: x non-empty with a finite maximum.
inline SoftmaxRow softmax_row(std::span<const double> x, std::span<const double> x_error, double sum_error,
                              double normalize_error) {
  const std::size_t n = x.size();
  const double top = *std::max_element(x.begin(), x.end());
  double s = 0;
  for (double xj : x) s += std::exp(xj - top);
  SoftmaxRow r{std::vector<double>(n), std::vector<double>(n), top + std::log(s), std::log(s), 0};
  std::vector<double> a(n, 0.0);
  double mean_a = 0;  // sum_k p_k a_k
  for (std::size_t j = 0; j < n; ++j) {
    if (std::isinf(x[j])) continue;  // exp(-inf) = 0 exactly
    r.p[j] = std::exp(x[j] - top) / s;
    a[j] = (x_error.empty() ? 0.0 : x_error[j]) + u * std::abs(x[j] - top) + 2 * u;
    mean_a += r.p[j] * a[j];
  }
  const double flt_min = std::numeric_limits<float>::min();
  for (std::size_t j = 0; j < n; ++j)
    r.p_error[j] = r.p[j] * (a[j] + mean_a + sum_error + normalize_error) + flt_min;
  r.lse_error = mean_a + sum_error + double(n) * flt_min;  // S >= 1: each e_j's FLT_MIN is relative
  return r;
}

/// Exact LayerNorm of one row, y_j = (x_j - mean) rstd w_j + b_j, rstd = 1 / sqrt(var + eps)
/// (biased variance), with bounds on a computed row's error.
struct LayerNormRow {
  std::vector<double> y;        ///< exact output
  std::vector<double> y_error;  ///< bound on |computed y_j - y_j|
  double rstd = 0;              ///< exact rstd
  double rstd_error = 0;        ///< bound on |computed rstd - rstd|
};

/// Bounds for a LayerNorm row whose two-pass statistics and arithmetic have unit roundoff `acc`
/// (u_double for hattn's double accumulators, u for a float implementation), each result then
/// stored in float (u |y| more). To first order, with c_j = x_j - mean:
///   mean within e_mu = gamma_d sum |x| / d; c_j within e_mu + acc |c_j|;
///   sum c^2 within (gamma_d + 2 acc) sum c^2 + d e_mu^2 (e_mu cancels to first order: sum c = 0);
///   rstd relative r_s = r_v / 2 + 2 acc, r_v the relative error of var + eps (2 more roundings);
///   |y_j err| <= |w_j| rstd (e_mu + acc |c_j|) + |c_j rstd w_j| (r_s + 2 acc) + (acc + u) |y_j|.
inline LayerNormRow layernorm_row(std::span<const double> x, std::span<const double> w, std::span<const double> b,
                                  double acc, double eps = 1e-5) {
  const std::size_t d = x.size();
  double sum = 0, sum_abs = 0;
  for (double v : x) sum += v, sum_abs += std::abs(v);
  const double mean = sum / double(d), e_mu = gamma(double(d), acc) * sum_abs / double(d);
  double sq = 0;
  for (double v : x) sq += (v - mean) * (v - mean);
  const double var_eps = sq / double(d) + eps;
  const double r_v = ((gamma(double(d), acc) + 2 * acc) * sq / double(d) + e_mu * e_mu) / var_eps + 2 * acc;
  const double r_s = r_v / 2 + 2 * acc;
  LayerNormRow r{std::vector<double>(d), std::vector<double>(d), 1 / std::sqrt(var_eps), 0};
  r.rstd_error = r.rstd * (r_s + u);
  for (std::size_t j = 0; j < d; ++j) {
    const double c = x[j] - mean, scaled = std::abs(c * r.rstd * w[j]);
    r.y[j] = c * r.rstd * w[j] + b[j];
    r.y_error[j] = std::abs(w[j]) * r.rstd * (e_mu + acc * std::abs(c)) + scaled * (r_s + 2 * acc) +
                   (acc + u) * std::abs(r.y[j]);
  }
  return r;
}

/// A value computed by a chain of float operations, carried with a bound on its error (Higham's
/// running error analysis, 3.3): `value` is the exact result, `error` bounds |computed - value|.
/// Each operation adds the propagated input errors (including their products, so the bound is
/// not only first order) and its own rounding, u (|result| + propagated error).
struct Bounded {
  double value = 0;
  double error = 0;

  /// An input the computation sees exactly.
  static Bounded exact(double v) { return {v, 0}; }
  /// A double constant the computation rounds to float once: its error is that rounding.
  static Bounded to_float(double c) { return {c, std::abs(double(float(c)) - c)}; }
};

/// The rounding of a result with exact value v and propagated error e: e + u (|v| + e).
inline Bounded rounded(double v, double e) { return {v, e + u * (std::abs(v) + e)}; }

inline Bounded operator+(Bounded a, Bounded b) { return rounded(a.value + b.value, a.error + b.error); }
inline Bounded operator-(Bounded a, Bounded b) { return rounded(a.value - b.value, a.error + b.error); }
inline Bounded operator*(Bounded a, Bounded b) {
  return rounded(a.value * b.value, std::abs(a.value) * b.error + std::abs(b.value) * a.error + a.error * b.error);
}
/// requires: b.error < |b.value| (the computed divisor keeps its sign).
inline Bounded operator/(Bounded a, Bounded b) {
  const double q = a.value / b.value, m = std::abs(b.value);
  return rounded(q, (std::abs(a.value) * b.error + m * a.error) / (m * (m - b.error)));
}
/// |sqrt(x + e) - sqrt(x)| <= min(e / sqrt(x), sqrt(e)). requires: a.value >= 0.
inline Bounded sqrt(Bounded a) {
  const double r = std::sqrt(a.value);
  return rounded(r, r > 0 ? std::min(a.error / r, std::sqrt(a.error)) : std::sqrt(a.error));
}

/// The largest error / bound over a test's comparisons, printed as test_parity prints its figures.
struct Worst {
  double ratio = 0;
  /// |got - want| / bound, kept as the worst so far: <= 1 passes.
  double operator()(double got, double want, double bound) {
    const double r = std::abs(got - want) / (bound + 1e-300);
    ratio = std::max(ratio, r);
    return r;
  }
  /// Prints "<what>: worst error / bound <ratio>".
  void print(const std::string& what) const { std::printf("%s: worst error / bound %.3g\n", what.c_str(), ratio); }
};

/// Float error bounds of a whole Decoder, the same for every correct kernel (docs/model.md, "How
/// it is verified"). To first order the bounds of a chain of sums add, so a result at the end of a
/// chain is within gamma_n M, n the sum of the reduction lengths along its longest path and M the
/// magnitude of the operands feeding it. exp, log, sqrt and the divisions add a few u each, far
/// below the reduction terms.
struct DecoderBounds {
  double forward;   ///< gamma_n over the forward path: embedding to loss
  double backward;  ///< gamma_n over forward, backward and a weight gradient's sum over rows
};

/// The parts of a variant (SPEC.md "Variants") that lengthen a row's reduction path.
struct VariantPath {
  bool dense = false;     ///< Mixer::dense: one attention over the unpadded sequence per slot
  bool pooled = false;    ///< summaries > 0: a mean over at most Tp left rows before the keys
  bool residual = false;  ///< NodeCombine::residual: one more addition per level
};

/// DecoderBounds of a configuration run on (batch, tokens) ids with vocabulary `vocab`.
inline DecoderBounds decoder_bounds(double levels, double heads, double d_model, double blocks, double vocab,
                                    double batch, double tokens, VariantPath variant = {}) {
  const double L = levels, H = heads, d = d_model, V = vocab, B = batch;
  const double leaves = std::ldexp(1.0, int(L));
  // Padded length: a whole number of chunks (the dense mixer does not pad).
  const double Tp = variant.dense ? tokens : std::ceil(tokens / leaves) * leaves;
  // One attention layer: Q/K/V projection (d), scores (d / H), softmax and the weighted sum over at
  // most Tp keys (2 Tp), output projection (d), LayerNorm (d); a pooled level's mean over at most
  // Tp rows and a residual level's addition come on top.
  const double attention = 3 * d + d / H + 2 * Tp + (variant.pooled ? Tp : 0) + (variant.residual ? 1 : 0);
  // A block: two attention slots (each the leaf and every level, or one dense attention), the
  // feed-forward (d, then 4d) and its LayerNorm (d).
  const double block = 2 * (variant.dense ? 1 : L + 1) * attention + 6 * d;
  // The head (d), the log-sum-exp over the vocabulary (V).
  const double forward = blocks * block + d + 2 * V;
  // Backward retraces the path; a weight gradient then sums over every row of the batch.
  const double backward = 2 * forward + B * Tp;
  return {gamma(forward), gamma(backward)};
}

/// The module whose gradients share a gradient's operands: the parameter's layer
/// ("...feed_forward.0", "...norm"), and for an attention's projections the whole attention
/// ("...cross_attention"), since dQ, dK and dV all come from the same softmax gradient. A
/// gradient's bound scales with its module's largest gradient.
inline std::string module_of(std::string name) {
  name = name.substr(0, name.rfind('.'));  // drop "weight" / "bias"
  const auto last = name.rfind('.');
  const std::string layer = last == std::string::npos ? name : name.substr(last + 1);
  if (layer == "W_q" || layer == "W_k" || layer == "W_v" || layer == "W_o") name = name.substr(0, last);
  return name;
}

}  // namespace hattn::test::fe
