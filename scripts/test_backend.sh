#!/usr/bin/env bash
# Builds and runs the core, parity and determinism tests with hattn::gemm on another backend:
#   scripts/test_backend.sh openblas   (the default build, scripts/test.sh, uses onednn)
# Configures build-<backend>/ (Release, Ninja), builds only those tests and runs them with ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
backend="${1:?usage: scripts/test_backend.sh onednn|openblas}"
jobs="$(nproc)"
tests=(test_core test_linear test_attention test_linear_cross_entropy test_decoder test_parity test_trainer)

scripts/deps.sh
cmake -S . -B "build-$backend" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHATTN_GEMM="$backend" \
  -DHATTN_BUILD_CLI=OFF -DHATTN_BUILD_EXAMPLES=OFF -DHATTN_BUILD_BENCHMARKS=OFF
cmake --build "build-$backend" -j "$jobs" --target "${tests[@]}"
cd "build-$backend"
regex="^($(IFS='|'; echo "${tests[*]}")):"
status=0
ctest --output-on-failure -j "$jobs" -R "$regex" || status=$?
exit "$status"
