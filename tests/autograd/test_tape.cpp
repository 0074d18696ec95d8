#include <catch2/catch.hpp>

#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/core/arena.hpp"
#include "hattn/ops/linear.hpp"
#include "support/gradcheck.hpp"

using hattn::Index;
using hattn::Tape;
using hattn::Var;
using hattn::View;

namespace {

// A node that logs its id when its backward runs.
struct LogNode {
  std::vector<int>* log = nullptr;
  int id = 0;
  void backward() const { log->push_back(id); }
};

}  // namespace

TEST_CASE("the tape replays backward passes in reverse order and clears for reuse", "[tape]") {
  static_assert(hattn::TapeNode<LogNode>);
  static_assert(hattn::TapeNode<hattn::ops::LinearNode<float>>);
  std::vector<int> log;
  Tape tape(4);
  for (int i = 0; i < 3; ++i) tape.record(LogNode{&log, i});
  REQUIRE(tape.size() == 3);
  tape.backward();
  REQUIRE(log == std::vector<int>{2, 1, 0});
  tape.clear();
  REQUIRE(tape.size() == 0);
  REQUIRE(tape.capacity() == 4);
  tape.backward();
  REQUIRE(log.size() == 3);
}

TEST_CASE("backward_to replays and forgets only the records after the first ones", "[tape]") {
  std::vector<int> log;
  Tape tape(8);
  for (int i = 0; i < 3; ++i) tape.record(LogNode{&log, i});
  const std::size_t keep = tape.size();
  for (int i = 3; i < 6; ++i) tape.record(LogNode{&log, i});
  tape.backward_to(keep);
  REQUIRE(log == std::vector<int>{5, 4, 3});
  REQUIRE(tape.size() == keep);
  tape.record(LogNode{&log, 6});  // recorded after a partial replay, replayed before the kept ones
  tape.backward_to(keep);
  tape.backward_to(keep);  // nothing left after `keep`: no-op
  REQUIRE(log == std::vector<int>{5, 4, 3, 6});
  tape.backward();
  REQUIRE(log == std::vector<int>{5, 4, 3, 6, 2, 1, 0});
  REQUIRE(tape.size() == keep);
  tape.backward_to(0);
  REQUIRE(tape.size() == 0);
  REQUIRE(log == std::vector<int>{5, 4, 3, 6, 2, 1, 0, 2, 1, 0});
}

TEST_CASE("a two-layer network on the tape gives the direct backward's gradients, step after step",
          "[tape]") {
  // y = (x W1^T + b1) W2^T + b2 on arena buffers, loss gradient dy fixed.
  const Index m = 6, k = 5, h = 7, n = 3;
  hattn::Arena<double> params(256), grads(256), acts(256), act_grads(256);
  auto w1 = params.view(h, k), w2 = params.view(n, h);
  auto b1 = params.view(h), b2 = params.view(n);
  auto dw1 = grads.view(h, k), dw2 = grads.view(n, h);
  auto db1 = grads.view(h), db2 = grads.view(n);
  for (auto v : {w1.matrix(), w2.matrix()}) {
    const auto r = hattn::test::uniform(std::size_t(v.size()), std::uint64_t(v.size()));
    std::copy(r.begin(), r.end(), v.data);
  }
  auto x = acts.view(m, k), z = acts.view(m, h), y = acts.view(m, n);
  auto dz = act_grads.view(m, h), dy = act_grads.view(m, n);
  const auto xr = hattn::test::uniform(std::size_t(m * k), 3), dyr = hattn::test::uniform(std::size_t(m * n), 4);
  std::copy(xr.begin(), xr.end(), x.data);

  // Reference: direct calls.
  hattn::ops::linear_forward<double>(z, x, w1, b1);
  hattn::ops::linear_forward<double>(y, z, w2, b2);
  std::copy(dyr.begin(), dyr.end(), dy.data);
  hattn::ops::linear_backward<double>(dy, z, w2, dz, dw2, db2);
  hattn::ops::linear_backward<double>(dz, x, w1, {}, dw1, db1);
  const std::vector<double> expected(grads.data(), grads.data() + grads.used());

  Tape tape(2);
  std::vector<double> first_output;
  for (int step = 0; step < 3; ++step) {
    grads.zero();
    act_grads.zero();
    tape.clear();
    hattn::ops::linear<double>(&tape, {z, dz}, {x, {}}, {w1, dw1}, {b1, db1});
    hattn::ops::linear<double>(&tape, {y, dy}, {z, dz}, {w2, dw2}, {b2, db2});
    REQUIRE(tape.size() == 2);
    REQUIRE(tape.capacity() == 2);  // reserved once, never reallocated
    std::copy(dyr.begin(), dyr.end(), dy.data);
    tape.backward();
    const std::vector<double> got(grads.data(), grads.data() + grads.used());
    REQUIRE(got == expected);
    const std::vector<double> out(y.data, y.data + y.size());
    if (step == 0) first_output = out;
    REQUIRE(out == first_output);
  }
}
