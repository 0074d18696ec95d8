#pragma once
/// \file
/// hattn's parallelism: the only header that includes oneTBB. Work is always split into a fixed
/// set of independent items decided by the caller, never by the number of threads, so every
/// result is bitwise the same whatever the thread count. Define HATTN_SERIAL to build without TBB.

#include <algorithm>
#include <memory>

#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"

#if defined(__SANITIZE_THREAD__)
#define HATTN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HATTN_TSAN 1
#endif
#endif
#ifdef HATTN_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#ifndef HATTN_SERIAL
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/parallel_for.h>
#endif

namespace hattn {

namespace detail {

/// Under ThreadSanitizer: oneTBB hands tasks between threads inside libtbb, which is not
/// instrumented, so the sanitizer cannot see that a task's body runs after the code that started
/// tbb::parallel_for and before the code that follows it. tsan_release(p) and a later
/// tsan_acquire(p) on another thread state such an ordering; elsewhere they compile to nothing.
inline void tsan_release([[maybe_unused]] const void* p) {
#ifdef HATTN_TSAN
  __tsan_release(const_cast<void*>(p));
#endif
}
/// See tsan_release().
inline void tsan_acquire([[maybe_unused]] const void* p) {
#ifdef HATTN_TSAN
  __tsan_acquire(const_cast<void*>(p));
#endif
}

}  // namespace detail

/// Calls `f(i)` for every `i` in [0, n), in parallel where TBB is enabled. Each `f(i)` must only
/// write what no other index writes. Nested calls are allowed (TBB schedules them).
template <class F>
void parallel_for(Index n, F&& f) {
#ifdef HATTN_SERIAL
  for (Index i = 0; i < n; ++i) f(i);
#else
  if (n <= 0) return;
  if (n == 1) {
    f(Index{0});
    return;
  }
  const char before = 0, after = 0;  // ThreadSanitizer's names for the two orderings (no data)
  detail::tsan_release(&before);
  tbb::parallel_for(Index{0}, n, [&](Index i) {
    detail::tsan_acquire(&before);
    f(i);
    detail::tsan_release(&after);
  });
  detail::tsan_acquire(&after);
#endif
}

/// Threads hattn may use right now (1 when built with HATTN_SERIAL).
inline int max_threads() {
#ifdef HATTN_SERIAL
  return 1;
#else
  return static_cast<int>(
      tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
#endif
}

/// Caps the threads hattn (and anything else using oneTBB in the process) may use while it lives.
/// Results do not depend on the cap; only the speed does.
class ThreadLimit {
 public:
  /// Allows at most `threads` threads (>= 1).
  explicit ThreadLimit(int threads) {
    detail::require(threads >= 1, "ThreadLimit", "thread count must be >= 1, got ", threads);
#ifndef HATTN_SERIAL
    control_ = std::make_unique<tbb::global_control>(
        tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
#endif
  }

 private:
#ifndef HATTN_SERIAL
  std::unique_ptr<tbb::global_control> control_;
#endif
};

}  // namespace hattn
