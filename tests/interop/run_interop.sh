#!/bin/sh
# ctest driver: run_interop.sh <write_checkpoint executable> <python3> <check_torch.py>.
# Writes a checkpoint with hattn into a scratch directory, then checks it in PyTorch. Exit 77 (the
# test's SKIP_RETURN_CODE) when python3 or torch is unavailable.
set -u
writer=$1 python=$2 script=$3
if [ ! -x "$python" ]; then
  echo "run_interop.sh: skipped, no $python"
  exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/hattn_interop.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
"$writer" "$dir" || exit 1
"$python" "$script" "$dir"
