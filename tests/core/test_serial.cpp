// The serial fallback: built with HATTN_SERIAL (together with the linear and attention tests),
// hattn uses no oneTBB at all, runs parallel_for as a plain loop in index order on the calling
// thread, and reports a single thread whatever limit is set.

#ifndef HATTN_SERIAL
#error "test_serial.cpp tests the HATTN_SERIAL build; compile it with -DHATTN_SERIAL"
#endif

#include <catch2/catch.hpp>

#include <hattn/hattn.hpp>

#include <thread>
#include <utility>
#include <vector>

#include "support/gradcheck.hpp"

// Every oneTBB header includes detail/_config.h, whose guard is this macro: the umbrella header
// must not have pulled any of them in.
#ifdef __TBB_detail__config_H
#error "hattn included a oneTBB header although HATTN_SERIAL is defined"
#endif

using hattn::Index;

TEST_CASE("serial build: max_threads is 1 whatever thread limit is set", "[serial]") {
  REQUIRE(hattn::max_threads() == 1);
  {
    hattn::ThreadLimit limit(2);
    REQUIRE(hattn::max_threads() == 1);
  }
  REQUIRE(hattn::test::with_threads(4, [] { return hattn::max_threads(); }) == 1);
  // The limit's argument is still validated, with the same message as the TBB build.
  REQUIRE_THROWS_WITH(hattn::ThreadLimit(0), "ThreadLimit: thread count must be >= 1, got 0");
}

TEST_CASE("serial build: parallel_for runs 0, 1, 2, ... in order on the calling thread",
          "[serial]") {
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<Index> order;
  bool same_thread = true;
  hattn::parallel_for(1000, [&](Index i) {
    order.push_back(i);
    same_thread = same_thread && std::this_thread::get_id() == caller;
  });
  REQUIRE(same_thread);
  REQUIRE(order.size() == 1000);
  for (std::size_t i = 0; i < order.size(); ++i) REQUIRE(order[i] == Index(i));

  // Nested calls finish each inner loop before the next outer index: lexicographic order.
  std::vector<std::pair<Index, Index>> nested;
  hattn::parallel_for(4, [&](Index i) {
    hattn::parallel_for(3, [&](Index j) { nested.emplace_back(i, j); });
  });
  std::vector<std::pair<Index, Index>> expected;
  for (Index i = 0; i < 4; ++i)
    for (Index j = 0; j < 3; ++j) expected.emplace_back(i, j);
  REQUIRE(nested == expected);

  int calls = 0;
  hattn::parallel_for(0, [&](Index) { ++calls; });
  hattn::parallel_for(-3, [&](Index) { ++calls; });
  REQUIRE(calls == 0);
}
