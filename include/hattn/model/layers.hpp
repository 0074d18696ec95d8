#pragma once
/// \file
/// The model's layer parameters (multi-head attention with fused Q|K|V, LayerNorm), their SPEC.md
/// names, and small helpers shared by the hierarchy, the block and the decoder.

#include <array>
#include <cmath>
#include <string>

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/model/parameters.hpp"
#include "hattn/ops/dropout.hpp"
#include "hattn/ops/linear.hpp"

namespace hattn::model {

/// `p + n`, or null when `p` is null (views of a sizing pass or of absent gradients).
template <class T>
T* offset(T* p, Index n) {
  return p ? p + n : nullptr;
}

/// The same tensor and gradient seen flat, (size).
template <class T, int R>
Var<T, 1> flat(Var<T, R> v) {
  return {View<T, 1>(v.value.data, v.value.size()),
          v.grad.present() ? View<T, 1>(v.grad.data, v.grad.size()) : View<T, 1>()};
}

/// The same tensor and gradient as (rows, last dimension).
template <class T, int R>
Var<T, 2> matrix(Var<T, R> v) {
  return {v.value.matrix(), v.grad.present() ? v.grad.matrix() : View<T, 2>()};
}

/// Rows `r0 .. r0 + rows` of a (N, cols) weight and its gradient, as a (rows, cols) Var.
template <class T>
Var<T, 2> row_slice(Var<T, 2> w, Index r0, Index rows) {
  const Index cols = w.value.dim(1);
  return {View<T, 2>(offset(w.value.data, r0 * cols), rows, cols),
          w.grad.present() ? View<T, 2>(w.grad.data + r0 * cols, rows, cols) : View<T, 2>()};
}

/// Entries `i0 .. i0 + n` of a bias and its gradient.
template <class T>
Var<T, 1> slice(Var<T, 1> b, Index i0, Index n) {
  return {View<T, 1>(offset(b.value.data, i0), n),
          b.grad.present() ? View<T, 1>(b.grad.data + i0, n) : View<T, 1>()};
}

/// Blocks of rows of a contiguous (groups * rows, cols) Var, with the given column offset, width
/// and row stride, as strided Rows for attention.
template <class T>
RowsVar<T> blocks(Var<T, 2> m, Index rows, Index col0, Index cols) {
  const Index stride = m.value.dim(1), groups = m.value.dim(0) / rows;
  auto make = [&](View<T, 2> v) {
    return v.present() ? Rows<T>{v.data + col0, groups, rows, cols, stride, rows * stride} : Rows<T>{};
  };
  return {make(m.value), make(m.grad)};
}

/// Parameters of one multi-head attention: W_q, W_k, W_v stored adjacently as one (3d, d) block
/// (and their biases as one (3d) block), so projections that share an input are one GEMM.
template <class T>
struct MhaParams {
  Var<T, 2> wqkv;  ///< (3d, d) rows: W_q, W_k, W_v
  Var<T, 1> bqkv;  ///< (3d): b_q, b_k, b_v
  Var<T, 2> wo;    ///< (d, d)
  Var<T, 1> bo;    ///< (d)
};

/// Parameters of one LayerNorm.
template <class T>
struct NormParams {
  Var<T, 1> w;  ///< (d) weight, 1 at initialization
  Var<T, 1> b;  ///< (d) bias, 0 at initialization
};

/// Takes and names a Linear's weight (out, in) and bias (out): `<prefix>.weight`, `<prefix>.bias`.
template <class T>
void name_linear(ParameterBuilder<T>& pb, const std::string& prefix, Var<T, 2> w, Var<T, 1> b) {
  const Index out = w.value.dim(0), in = w.value.dim(1);
  const double bound = 1.0 / std::sqrt(double(in));
  pb.name(prefix + ".weight", {out, in}, w.value.data, w.grad.data, Init::uniform, bound);
  pb.name(prefix + ".bias", {out}, b.value.data, b.grad.data, Init::uniform, bound);
}

/// Takes a Linear (out, in) with its SPEC.md names.
template <class T>
std::pair<Var<T, 2>, Var<T, 1>> make_linear(ParameterBuilder<T>& pb, const std::string& prefix,
                                            Index out, Index in) {
  Var<T, 2> w = pb.take(out, in);
  Var<T, 1> b = pb.take(out);
  if (w.value.present()) name_linear(pb, prefix, w, b);
  return {w, b};
}

/// Takes a multi-head attention named `<prefix>.W_{q,k,v,o}.{weight,bias}`.
template <class T>
MhaParams<T> make_mha(ParameterBuilder<T>& pb, const std::string& prefix, Index d) {
  MhaParams<T> m{pb.take(3 * d, d), pb.take(3 * d), pb.take(d, d), pb.take(d)};
  if (!m.wqkv.value.present()) return m;
  static constexpr std::array<const char*, 3> names{"W_q", "W_k", "W_v"};
  for (Index i = 0; i < 3; ++i)
    name_linear(pb, prefix + "." + names[i], row_slice(m.wqkv, i * d, d), slice(m.bqkv, i * d, d));
  name_linear(pb, prefix + ".W_o", m.wo, m.bo);
  return m;
}

/// Takes a LayerNorm named `<prefix>.{weight,bias}`.
template <class T>
NormParams<T> make_norm(ParameterBuilder<T>& pb, const std::string& prefix, Index d) {
  NormParams<T> n{pb.take(d), pb.take(d)};
  if (!n.w.value.present()) return n;
  pb.name(prefix + ".weight", {d}, n.w.value.data, n.w.grad.data, Init::ones);
  pb.name(prefix + ".bias", {d}, n.b.value.data, n.b.grad.data, Init::zeros);
  return n;
}

/// y = x W^T + b for a projection whose output columns [key0, key0 + d) are attention keys. The
/// key bias gets no gradient: it adds q . b_k to every score of a query row, which softmax
/// ignores, so its true gradient is exactly zero (computed, it would be rounding noise that Adam
/// amplifies). Every other bias column gets its column sum of dy as usual. key0 < 0: no keys.
template <class T>
void project(Tape* tape, Var<T, 2> y, Var<T, 2> x, Var<T, 2> w, Var<T, 1> b, Index key0, Index d) {
  ops::linear<T>(tape, y, x, w, {b.value, {}});
  if (!tape || !b.grad.present() || !y.grad.present()) return;
  const Index n = b.grad.dim(0);
  const Index k0 = key0 < 0 ? n : key0, k1 = key0 < 0 ? n : key0 + d;
  if (k0 > 0) tape->record(ops::LinearBiasNode<T>{y.grad, 0, View<T, 1>(b.grad.data, k0)});
  if (k1 < n) tape->record(ops::LinearBiasNode<T>{y.grad, k1, View<T, 1>(b.grad.data + k1, n - k1)});
}

/// What a forward pass needs besides parameters and activations.
struct ForwardContext {
  Tape* tape = nullptr;       ///< record here (training); null: inference
  bool dropout = false;       ///< apply dropout (p = 0.1)
  std::uint64_t seed = 0;     ///< dropout masks: Philox key
  std::uint64_t step = 0;     ///< dropout masks: the step, so every step draws new masks
  Index heads = 1;            ///< attention heads
  Tape* recompute = nullptr;  ///< gradient checkpointing: the tape a hierarchy's backward
                              ///< recomputes its forward pass on; null: activations are kept
  Index tokens = 0;           ///< real rows per sequence (T); the blocks' other rows are padding
  Index sequences = 1;        ///< sequences in this forward pass (B): every dropout site's rows are
                              ///< B equal per-sequence slices, in sequence order
  std::uint64_t first_sequence = 0;  ///< dropout masks: the batch index of this pass's first sequence

  /// The Philox stream of dropout site `site` at this step.
  std::uint64_t stream(std::uint64_t site) const { return step << 20 | site; }
};

/// The dropout probability of every dropout in the model (SPEC.md).
inline constexpr double dropout_p = 0.1;

/// Dropout in place on `x`'s values when the context asks for it; returns the Var to read on:
/// `x` itself, or x's values with `grad` (a separate buffer, since backward needs dy and dx apart).
template <class T, int R>
Var<T, R> maybe_dropout(const ForwardContext& ctx, Var<T, R> x, View<T, R> grad, std::uint64_t site) {
  if (!ctx.dropout) return x;
  Var<T, R> y{x.value, grad};
  ops::dropout<T>(ctx.tape, flat(y), flat(x), dropout_p, true, ctx.seed, ctx.stream(site),
                  ops::DropoutSequences{ctx.sequences, ctx.first_sequence});
  return y;
}

}  // namespace hattn::model
