#pragma once
// Test harness for ops: output coverage, central-difference gradient checks in double precision,
// and the check that backward adds into gradients rather than overwriting them.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "hattn/core/parallel.hpp"
#include "hattn/core/rng.hpp"

namespace hattn::test {

/// One argument of an op under test: a flat buffer of doubles.
struct Arg {
  std::string name;
  std::vector<double> value;
  bool differentiable = true;  ///< false: no gradient is requested for it (grads[i] is null)
};

/// An op under test, in double precision, seen as out = f(args).
struct OpUnderTest {
  std::vector<Arg> args;
  std::size_t out_size = 0;
  /// Writes every entry of `out` from `args` (pointers into Arg::value, in order).
  std::function<void(const std::vector<double*>& args, double* out)> forward;
  /// Adds dL/d(args) into `grads` given `args`, the forward output and dL/dout. grads[i] is null
  /// for arguments that are not differentiable.
  std::function<void(const std::vector<double*>& args, const double* out, const double* dout,
                     const std::vector<double*>& grads)>
      backward;
};

/// Settings of check_op.
struct CheckOptions {
  double step = 1e-5;        ///< central-difference step
  double tolerance = 1e-6;   ///< max |analytic - numeric| / max(|analytic|, |numeric|, floor)
  double floor = 1e-3;       ///< magnitude below which errors count as absolute
  std::uint64_t seed = 1234; ///< for dL/dout and the gradient pre-fill
};

/// Uniform values in [lo, hi) from a seeded generator.
inline std::vector<double> uniform(std::size_t n, std::uint64_t seed, double lo = -1.0,
                                   double hi = 1.0) {
  Generator g(seed, 7);
  std::vector<double> v(n);
  for (auto& x : v) x = g.uniform(lo, hi);
  return v;
}

/// Pointers to each argument's data.
inline std::vector<double*> pointers(std::vector<Arg>& args) {
  std::vector<double*> p;
  for (auto& a : args) p.push_back(a.value.data());
  return p;
}

/// Runs, with Catch2 assertions:
///  1. forward into an output pre-filled with NaN: every output entry must be written (finite);
///  2. backward with a random dL/dout into gradients pre-filled with zeros and, separately, with
///     random values: the second must equal prefill + the first (backward adds, never overwrites);
///  3. every gradient entry against a central difference of L = sum(out * dL/dout); an entry that
///     backward never wrote still holds its random prefill and fails here.
/// Returns the largest relative error seen.
inline double check_op(OpUnderTest& op, const CheckOptions& opt = {}) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto args = pointers(op.args);

  std::vector<double> out(op.out_size, nan);
  op.forward(args, out.data());
  std::size_t unwritten = 0;
  for (double v : out) unwritten += !std::isfinite(v);
  INFO("forward left " << unwritten << " of " << out.size() << " output entries unwritten");
  REQUIRE(unwritten == 0);

  const std::vector<double> dout = uniform(op.out_size, opt.seed, 0.5, 1.5);
  const auto loss = [&] {
    std::vector<double> o(op.out_size);
    op.forward(args, o.data());
    double l = 0;
    for (std::size_t i = 0; i < o.size(); ++i) l += o[i] * dout[i];
    return l;
  };

  // Gradients from a zero prefill, and from a random prefill.
  std::vector<std::vector<double>> zero_grads, filled_grads, prefill;
  std::vector<double*> gz, gf;
  for (std::size_t a = 0; a < op.args.size(); ++a) {
    const std::size_t n = op.args[a].differentiable ? op.args[a].value.size() : 0;
    zero_grads.emplace_back(n, 0.0);
    prefill.push_back(uniform(n, opt.seed + 1 + a, -2.0, 2.0));
    filled_grads.push_back(prefill.back());
  }
  for (std::size_t a = 0; a < op.args.size(); ++a) {
    const bool d = op.args[a].differentiable;
    gz.push_back(d ? zero_grads[a].data() : nullptr);
    gf.push_back(d ? filled_grads[a].data() : nullptr);
  }
  op.backward(args, out.data(), dout.data(), gz);
  op.backward(args, out.data(), dout.data(), gf);

  double worst = 0;
  for (std::size_t a = 0; a < op.args.size(); ++a) {
    if (!op.args[a].differentiable) continue;
    auto& x = op.args[a].value;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double analytic = zero_grads[a][i];
      const double added = filled_grads[a][i] - prefill[a][i];
      INFO("argument " << op.args[a].name << " entry " << i << ": backward into a prefilled "
                       << "gradient added " << added << ", into zeros wrote " << analytic);
      REQUIRE(std::abs(added - analytic) <= 1e-12 * (std::abs(prefill[a][i]) + std::abs(analytic)) + 1e-300);

      const double keep = x[i];
      x[i] = keep + opt.step;
      const double lp = loss();
      x[i] = keep - opt.step;
      const double lm = loss();
      x[i] = keep;
      const double numeric = (lp - lm) / (2 * opt.step);
      const double err = std::abs(analytic - numeric) /
                         std::max({std::abs(analytic), std::abs(numeric), opt.floor});
      worst = std::max(worst, err);
      INFO("argument " << op.args[a].name << " entry " << i << ": analytic " << analytic
                       << ", central difference " << numeric << ", relative error " << err);
      REQUIRE(err <= opt.tolerance);
    }
  }
  return worst;
}

/// Runs `f` with hattn limited to `threads` threads and returns its result.
template <class F>
auto with_threads(int threads, F&& f) {
  ThreadLimit limit(threads);
  return f();
}

}  // namespace hattn::test
