// The pieces a hattn model is built from, run once forward and backward on random data:
// parameters and activations in arenas, ops recorded on a tape, the tape replayed in reverse.
// Prints every tensor's shape and a checksum (sum of its entries), so runs can be compared.

#include <hattn/hattn.hpp>

#include <cmath>
#include <cstdio>
#include <string>

namespace {

using hattn::Index;
using hattn::View;

template <int R>
double checksum(View<float, R> v) {
  double s = 0;
  for (Index i = 0; i < v.size(); ++i) s += v.data[i];
  return s;
}

template <int R>
void report(const char* name, View<float, R> v) {
  std::printf("  %-4s %-14s checksum % .6e\n", name, v.shape().c_str(), checksum(v));
}

// PyTorch's default Linear initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void init_uniform(View<float, 2> w, View<float, 1> b, hattn::Generator& gen) {
  const double bound = 1.0 / std::sqrt(double(w.dim(1)));
  for (Index i = 0; i < w.size(); ++i) w.data[i] = float(gen.uniform(-bound, bound));
  for (Index i = 0; i < b.size(); ++i) b.data[i] = float(gen.uniform(-bound, bound));
}

}  // namespace

int main() {
  constexpr Index batch = 4, tokens = 32, d_in = 64, d_out = 48;
  constexpr Index rows = batch * tokens;
  std::printf("hattn pieces: %d threads\n", hattn::max_threads());

  // Parameters and their gradients: one arena each, sized once by a plan of the same takes.
  hattn::ArenaPlan plan;
  plan.add<float>(d_out * d_in);
  plan.add<float>(d_out);
  hattn::Arena<float> params(plan.total()), grads(plan.total());
  hattn::Var<float, 2> w{params.view(d_out, d_in), grads.view(d_out, d_in)};  // (N, K)
  hattn::Var<float, 1> b{params.view(d_out), grads.view(d_out)};              // (N)

  // Activations and their gradients.
  hattn::ArenaPlan act_plan;
  act_plan.add<float>(rows * d_in);
  act_plan.add<float>(rows * d_out);
  hattn::Arena<float> acts(act_plan.total()), act_grads(act_plan.total());
  hattn::Var<float, 2> x{acts.view(rows, d_in), act_grads.view(rows, d_in)};     // (B*T, K)
  hattn::Var<float, 2> y{acts.view(rows, d_out), act_grads.view(rows, d_out)};  // (B*T, N)

  hattn::Generator gen(/*seed=*/1234);
  init_uniform(w.value, b.value, gen);
  for (Index i = 0; i < x.value.size(); ++i) x.value.data[i] = float(gen.normal());

  // Training mode: forward on the tape.
  hattn::Tape tape;
  grads.zero();
  act_grads.zero();
  hattn::ops::linear<float>(&tape, y, x, w, b);

  // loss = mean(y), so dloss/dy = 1 / (rows * d_out) everywhere.
  const float seed_grad = 1.0f / float(rows * d_out);
  for (Index i = 0; i < y.grad.size(); ++i) y.grad.data[i] = seed_grad;
  tape.backward();

  std::printf("linear: y = x W^T + b, %zu tape record(s)\n", tape.size());
  report("x", x.value);
  report("W", w.value);
  report("b", b.value);
  report("y", y.value);
  std::printf("gradients of mean(y):\n");
  report("dx", x.grad);
  report("dW", w.grad);
  report("db", b.grad);

  // db = column sums of dy = rows / (rows * d_out) = 1 / d_out per entry: a check anyone can redo.
  double worst = 0;
  for (Index j = 0; j < d_out; ++j) worst = std::fmax(worst, std::fabs(b.grad.data[j] - 1.0 / d_out));
  std::printf("db vs 1/%ld: max abs error %.3g\n", long(d_out), worst);
  return worst < 1e-6 ? 0 : 1;
}
