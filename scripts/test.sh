#!/usr/bin/env bash
# Installs missing dependencies, builds hattn (Release, Ninja) into build/ and runs the whole test
# suite. Exits with ctest's status.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs="$(nproc)"

scripts/deps.sh --tests
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
cd build
status=0
ctest --output-on-failure -j "$jobs" || status=$?
exit "$status"
