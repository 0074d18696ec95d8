#!/usr/bin/env bash
# Installs missing dependencies, builds hattn (Release, Ninja) into build/ and runs the main job:
# `hattn train` with no arguments trains the tiny preset (pooled variant, lr 5e-3, no dropout) on
# the default corpus (Debian's fortunes) for 8750 steps, 2.5 to 4 minutes on 2 cores, then prints a
# sample. Outputs land in runs/tiny/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target hattn_cli
build/cli/hattn train
