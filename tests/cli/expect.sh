#!/usr/bin/env bash
# expect.sh STATUS REGEX [--stdin FILE] -- COMMAND...
# Runs COMMAND and passes when it exits with STATUS and its combined output matches the extended
# regular expression REGEX. Prints the command's output either way.
set -u
want_status=$1 regex=$2
shift 2
stdin=/dev/null
if [[ ${1-} == --stdin ]]; then stdin=$2; shift 2; fi
[[ ${1-} == -- ]] && shift
output=$("$@" < "$stdin" 2>&1)
status=$?
printf '%s\n' "$output"
if [[ $status -ne $want_status ]]; then
  echo "expect.sh: exit status $status, expected $want_status" >&2
  exit 1
fi
if ! grep -Eq -- "$regex" <<< "$output"; then
  echo "expect.sh: output does not match: $regex" >&2
  exit 1
fi
echo "expect.sh: ok (status $status, output matches)"
