// The pieces of a hattn model trained end to end on a tiny next-byte task: embedding plus
// sinusoid positions, dropout, padding to whole chunks, a fused Q|K|V projection, causal
// attention within leaf chunks of 8 rows, output projection, layernorm, slice back, residual,
// layernorm, vocabulary head, cross-entropy. Parameters, gradients and activations live in
// arenas sized once by an ArenaPlan; one tape records every step and is replayed in reverse;
// Adam updates the flat parameter arena. Exits non-zero unless the loss falls.

#include <hattn/hattn.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string_view>
#include <vector>

namespace {

using hattn::Index;
using hattn::Rows;
using hattn::RowsVar;
using hattn::Var;
using hattn::View;
namespace ops = hattn::ops;

constexpr std::string_view corpus =
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox runs "
    "into the woods. A small bird sings on the branch of an old tree. The children walk to the "
    "river to watch the boats go by. When the rain comes, the fox and the dog stay in the barn "
    "and the bird hides under the roof. In the morning the sun is warm again and the children "
    "walk back to the river.";

constexpr Index B = 4, T = 30, C = 8;        // batch, tokens, rows per leaf chunk
constexpr Index Tp = (T + C - 1) / C * C;    // 32: T padded to whole chunks (2 zero rows)
constexpr Index V = 256, d = 32, heads = 4;  // bytes, model width, attention heads
constexpr int steps = 60;
constexpr std::uint64_t seed = 2024;  // initialization, batches, and dropout (stream = step)

struct Params {
  Var<float, 2> E;             // (V, d) token embedding
  Var<float, 2> w_qkv;         // (3d, d) fused Q|K|V projection
  Var<float, 1> b_qkv;         // (3d)
  Var<float, 2> w_o;           // (d, d) attention output projection
  Var<float, 1> b_o;           // (d)
  Var<float, 1> ln1_w, ln1_b;  // (d), (d) layernorm of the attention output
  Var<float, 1> ln2_w, ln2_b;  // (d), (d) layernorm after the residual
  Var<float, 2> w_head;        // (V, d) vocabulary head
  Var<float, 1> b_head;        // (V)
};
template <class Take>
Params param_layout(Take take) {
  return {take(V, d), take(3 * d, d), take(3 * d), take(d, d), take(d), take(d),
          take(d),    take(d),        take(d),     take(V, d), take(V)};
}

struct Acts {
  Var<float, 3> x;       // (B, T, d) embedding + positions
  Var<float, 3> xd;      // (B, T, d) after dropout
  Var<float, 3> xp;      // (B, Tp, d) padded with Tp - T zero rows
  Var<float, 2> qkv;     // (B*Tp, 3d) Q | K | V side by side
  Var<float, 2> att;     // (B*Tp, d) attention output, heads side by side
  Var<float, 2> proj;    // (B*Tp, d) output projection
  Var<float, 3> h;       // (B, Tp, d) layernorm of proj
  Var<float, 3> hs;      // (B, T, d) first T rows of h
  Var<float, 3> r;       // (B, T, d) xd + hs
  Var<float, 2> n;       // (B*T, d) layernorm of r
  Var<float, 2> logits;  // (B*T, V)
  Var<float, 1> loss;    // (1)
};
template <class Take>
Acts act_layout(Take take) {
  return {take(B, T, d),  take(B, T, d), take(B, Tp, d), take(B * Tp, 3 * d),
          take(B * Tp, d), take(B * Tp, d), take(B, Tp, d), take(B, T, d),
          take(B, T, d),  take(B * T, d), take(B * T, V),  take(1)};
}

// Sizes `values` and `grads` by a dry run of `layout` on an ArenaPlan, then takes every buffer.
template <class Layout>
auto allocate(Layout layout, hattn::Arena<float>& values, hattn::Arena<float>& grads) {
  hattn::ArenaPlan plan;
  layout([&](auto... dims) {
    plan.add<float>((Index{1} * ... * Index(dims)));
    return Var<float, sizeof...(dims)>{};
  });
  values.reserve(plan.total());
  grads.reserve(plan.total());
  return layout([&](auto... dims) {
    return Var<float, sizeof...(dims)>{values.view(dims...), grads.view(dims...)};
  });
}

// The same value and gradient buffers seen with other dims.
template <int R, class... D>
Var<float, sizeof...(D)> as(Var<float, R> v, D... dims) {
  using Shaped = View<float, sizeof...(D)>;
  return {Shaped(v.value.data, dims...), Shaped(v.grad.data, dims...)};
}
template <int R>
Var<float, 1> flat(Var<float, R> v) {
  return as(v, v.value.size());
}

// Columns [col, col + cols) of an (M, W) matrix as M / C leaf chunks of C rows: (M/C, C, cols).
RowsVar<float> chunks(Var<float, 2> m, Index col, Index cols) {
  const Index w = m.value.dim(1), groups = m.value.dim(0) / C;
  return {Rows<float>{m.value.data + col, groups, C, cols, w, C * w},
          Rows<float>{m.grad.data + col, groups, C, cols, w, C * w}};
}

// PyTorch's default Linear initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void init_linear(Var<float, 2> w, Var<float, 1> b, hattn::Generator& gen) {
  const double bound = 1.0 / std::sqrt(double(w.value.dim(1)));
  for (Index i = 0; i < w.value.size(); ++i) w.value.data[i] = float(gen.uniform(-bound, bound));
  for (Index i = 0; i < b.value.size(); ++i) b.value.data[i] = float(gen.uniform(-bound, bound));
}
void init_layernorm(Var<float, 1> w, Var<float, 1> b) {
  for (Index i = 0; i < w.value.size(); ++i) w.value.data[i] = 1.0f, b.value.data[i] = 0.0f;
}

}  // namespace

int main() {
  hattn::Arena<float> params, grads, acts, act_grads;
  const Params p = allocate([](auto take) { return param_layout(take); }, params, grads);
  const Acts a = allocate([](auto take) { return act_layout(take); }, acts, act_grads);
  hattn::Arena<float> adam_m(params.capacity()), adam_v(params.capacity());  // zeroed moments

  // Buffers without gradients: the fixed position table and what the backward passes read.
  hattn::ArenaPlan fixed_plan;
  for (Index size : {T * d, B * Tp * heads, B * Tp, B * Tp, B * T, B * T, B * T})
    fixed_plan.add<float>(size);
  hattn::Arena<float> fixed(fixed_plan.total());
  const View<float, 2> P = fixed.view(T, d);                                    // (T, d) sinusoids
  const View<float, 3> att_lse = fixed.view(B * Tp / C, heads, C);              // (B*Tp/C, heads, C)
  const View<float, 1> mean1 = fixed.view(B * Tp), rstd1 = fixed.view(B * Tp);  // (B*Tp)
  const View<float, 1> mean2 = fixed.view(B * T), rstd2 = fixed.view(B * T);    // (B*T)
  const View<float, 1> ce_lse = fixed.view(B * T);                              // (B*T)
  ops::sinusoid_table<float>(P);

  hattn::Generator init(seed, /*stream=*/0), batches(seed, /*stream=*/1);
  for (Index i = 0; i < p.E.value.size(); ++i) p.E.value.data[i] = float(init.normal());
  init_linear(p.w_qkv, p.b_qkv, init);
  init_linear(p.w_o, p.b_o, init);
  init_linear(p.w_head, p.b_head, init);
  init_layernorm(p.ln1_w, p.ln1_b);
  init_layernorm(p.ln2_w, p.ln2_b);

  std::vector<std::int32_t> ids(B * T), targets(B * T);  // (B, T) bytes, (B*T) next bytes
  const View<const std::int32_t, 2> ids_view(ids.data(), B, T);
  const View<const std::int32_t, 1> targets_view(targets.data(), B * T);

  std::printf("hattn pieces: %d threads, %ld parameters, B=%ld T=%ld (Tp=%ld) d=%ld heads=%ld\n",
              hattn::max_threads(), long(params.capacity()), long(B), long(T), long(Tp), long(d),
              long(heads));
  hattn::Tape tape(16);
  float first = 0, last = 0;
  for (int step = 0; step < steps; ++step) {
    for (Index b = 0; b < B; ++b) {  // a random window of T bytes; the target is the next byte
      const Index start = Index(batches.below(corpus.size() - T + 1));
      for (Index t = 0; t < T; ++t) {
        ids[b * T + t] = std::uint8_t(corpus[start + t]);
        targets[b * T + t] = t + 1 < T ? std::uint8_t(corpus[start + t + 1]) : ops::ignore_index;
      }
    }
    tape.clear();
    grads.zero();
    act_grads.zero();

    ops::embedding<float>(&tape, a.x, ids_view, p.E, P);
    ops::dropout<float>(&tape, flat(a.xd), flat(a.x), 0.1, /*training=*/true, seed, step);
    ops::pad_rows<float>(&tape, a.xp, a.xd);
    ops::linear<float>(&tape, a.qkv, as(a.xp, B * Tp, d), p.w_qkv, p.b_qkv);
    ops::attention<float>(&tape, chunks(a.att, 0, d), chunks(a.qkv, 0, d), chunks(a.qkv, d, d),
                          chunks(a.qkv, 2 * d, d), att_lse, heads, ops::Mask::causal);
    ops::linear<float>(&tape, a.proj, a.att, p.w_o, p.b_o);
    ops::layernorm<float>(&tape, as(a.h, B * Tp, d), mean1, rstd1, a.proj, p.ln1_w, p.ln1_b);
    ops::slice_rows<float>(&tape, a.hs, a.h);
    ops::residual<float>(&tape, flat(a.r), flat(a.xd), flat(a.hs));
    ops::layernorm<float>(&tape, a.n, mean2, rstd2, as(a.r, B * T, d), p.ln2_w, p.ln2_b);
    ops::linear<float>(&tape, a.logits, a.n, p.w_head, p.b_head);
    const float loss = ops::cross_entropy<float>(&tape, a.loss, a.logits, targets_view, ce_lse);

    a.loss.grad.data[0] = 1.0f;  // dloss/dloss
    tape.backward();

    // Adam (lr 1e-2, betas 0.9 and 0.999) over the whole flat arena; padding entries have zero
    // gradients and stay put.
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float c1 = 1 - std::pow(b1, float(step + 1)), c2 = 1 - std::pow(b2, float(step + 1));
    float *w = params.data(), *g = grads.data(), *m = adam_m.data(), *v = adam_v.data();
    for (Index i = 0; i < params.capacity(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      w[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
    }

    if (step == 0) first = loss;
    last = loss;
    if (step % 10 == 0 || step == steps - 1)
      std::printf("step %2d  loss %.4f  (%zu tape records)\n", step, loss, tape.size());
  }

  if (!(last < first)) {
    std::fprintf(stderr, "the loss did not fall: first %.4f, last %.4f\n", first, last);
    return 1;
  }
  std::printf("loss fell from %.4f to %.4f\n", first, last);
  return 0;
}
