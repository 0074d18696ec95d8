#!/usr/bin/env bash
# The test suite under sanitizers, and the fuzz targets:
#   scripts/test_sanitize.sh [asan] [tsan] [fuzz]      (no argument: all three, in that order)
# asan  every test but the compile-only and package ones, built with GCC's AddressSanitizer and
#       UndefinedBehaviorSanitizer (build-asan/);
# tsan  the test cases that run the parallel ops and predict on several threads, built with
#       ThreadSanitizer (build-tsan/; suppressions: tests/tsan.supp, each one justified there);
# fuzz  the libFuzzer targets in fuzz/, built with Clang (build-fuzz/): each replays its committed
#       corpus, then fuzzes for HATTN_FUZZ_SECONDS (default 30) with a fixed seed.
# Any sanitizer finding fails the test that hit it. Exits non-zero if any part fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="$(nproc)"
parts=("$@")
((${#parts[@]})) || parts=(asan tsan fuzz)

scripts/deps.sh --tests --fuzz
common=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DHATTN_BUILD_BENCHMARKS=OFF)
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for part in "${parts[@]}"; do
  echo "== test_sanitize.sh: $part"
  case "$part" in
    asan)
      export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
      # -Og (and assertions on): measured on the model tests against -O1, 37% less compile time
      # and no slower to run; -O1 is half the compile time of -O3.
      # The tool with preset tiny and its default variant only (HATTN_CLI_ALL_BUILDS=OFF): the
      # variants' code runs under ASan in the model tests; 13 more tool builds would cost minutes.
      cmake -S . -B build-asan "${common[@]}" -DHATTN_SANITIZE=address,undefined -DCMAKE_CXX_FLAGS_RELEASE=-Og \
        -DHATTN_CLI_ALL_BUILDS=OFF
      cmake --build build-asan -j "$jobs"
      # Not the compile_fail tests (they only compile) nor the package tests (they build a
      # consumer of the installed headers, without sanitizers).
      (cd build-asan && ctest --output-on-failure -j "$jobs" -LE "^(compile_fail|package)$") || status=1
      ;;
    tsan)
      # The test cases that run work on several threads: the parallel ops' 1-versus-2-thread
      # comparisons, parallel_for itself, and concurrent predict.
      tests=(test_core test_linear test_attention test_layernorm test_softmax test_linear_cross_entropy
             test_decoder)
      cases="threads|parallel|concurren"
      export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp"
      # With debug information, so that a body inlined into oneTBB's templates keeps its own frame.
      cmake -S . -B build-tsan "${common[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHATTN_SANITIZE=thread \
        -DHATTN_BUILD_CLI=OFF -DHATTN_BUILD_EXAMPLES=OFF
      cmake --build build-tsan -j "$jobs" --target "${tests[@]}" tsan_canary
      regex="^(($(IFS='|'; echo "${tests[*]}")):.*($cases)|tsan_canary)"
      (cd build-tsan && ctest --output-on-failure -j "$jobs" -R "$regex") || status=1
      ;;
    fuzz)
      cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
        -DHATTN_BUILD_FUZZERS=ON -DHATTN_BUILD_TESTS=OFF -DHATTN_BUILD_EXAMPLES=OFF \
        -DHATTN_BUILD_BENCHMARKS=OFF -DHATTN_BUILD_CLI=OFF -DHATTN_INSTALL=OFF \
        -DHATTN_FUZZ_SECONDS="${HATTN_FUZZ_SECONDS:-30}"
      cmake --build build-fuzz -j "$jobs"
      # The whole libFuzzer output goes to build-fuzz/fuzz.log; shown here: each test's result and
      # executions, or the whole log when a test fails.
      fuzz_status=0
      # One fuzzer per core: each is single-threaded.
      (cd build-fuzz && ctest -V -L fuzz -j "$jobs" > fuzz.log 2>&1) || fuzz_status=1
      grep -E "Test +#|executed_units|tests passed|tests failed" build-fuzz/fuzz.log || true
      if ((fuzz_status)); then
        cat build-fuzz/fuzz.log
        status=1
      fi
      ;;
    *)
      echo "test_sanitize.sh: unknown part '$part' (expected asan, tsan or fuzz)" >&2
      exit 2
      ;;
  esac
done
exit "$status"
