// Checks scripts/test_sanitize.sh's ThreadSanitizer setup itself (tests/tsan.supp and the
// orderings hattn::parallel_for states): `tsan_canary clean` runs parallel bodies that share
// nothing and must report no race; `tsan_canary race` runs bodies that all add to one variable and
// must report that race, on this file's line. Built only with HATTN_SANITIZE=thread.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include <hattn/core/parallel.hpp>

int main(int argc, char** argv) {
  const bool race = argc > 1 && std::strcmp(argv[1], "race") == 0;
  std::vector<long> own(64, 0);  // (64) one entry per index
  hattn::parallel_for(64, [&](hattn::Index i) {
    own[std::size_t(i)] = i;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // so that both threads take indices
  });
  long total = 0;
  for (long v : own) total += v;  // after parallel_for: ordered after every body
  long shared = 0;
  // Index 0 waits (up to 5 s) until another thread has run an index, so that both threads take
  // part however loaded the machine is. Relaxed atomics order nothing, so they hide no race.
  const auto first = std::this_thread::get_id();
  std::atomic<bool> other_ran{false};
  hattn::parallel_for(64, [&](hattn::Index i) {
    if (std::this_thread::get_id() != first) other_ran.store(true, std::memory_order_relaxed);
    for (int k = 0; i == 0 && k < 5000 && !other_ran.load(std::memory_order_relaxed); ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (race) shared += i;  // the deliberate race
    own[std::size_t(i)] += 1;
  });
  std::printf("total %ld, shared %ld\n", total, shared);
  return 0;
}
