#!/usr/bin/env bash
# Installs missing dependencies, builds hattn (Release, Ninja) into build/ and runs the main job:
# the pieces example, which runs the library's building blocks forward and backward.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target hattn_example_pieces
build/examples/hattn_example_pieces
