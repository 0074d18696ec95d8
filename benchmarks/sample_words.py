#!/usr/bin/env python3
"""How much of a sample is words: the share of its words that occur in a corpus's training split.

    /usr/bin/python3 benchmarks/sample_words.py SAMPLE.txt [--data /usr/share/games/fortunes] [--validation 0.1]
    hattn generate ... | /usr/bin/python3 benchmarks/sample_words.py -

A word is a run of ASCII letters and apostrophes, case folded, apostrophes at its ends removed.
The training split is what `hattn train --data D --validation F` trains on with the byte
tokenizer: the corpus's files (a directory's regular files, not symbolic links nor *.dat indexes,
sorted by name) concatenated, without their last floor(n * F) bytes.
"""

import argparse
import os
import re
import sys

WORD = re.compile(r"[A-Za-z']+")


def corpus_bytes(path):
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            return f.read()
    names = sorted(os.listdir(path))
    files = [os.path.join(path, n) for n in names]
    files = [f for f in files if not os.path.islink(f) and os.path.isfile(f) and not f.endswith(".dat")]
    data = b""
    for f in files:
        with open(f, "rb") as fh:
            data += fh.read()
    return data


def words(text):
    return [w for w in (m.group(0).lower().strip("'") for m in WORD.finditer(text)) if w]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sample", help="a text file, or - for standard input")
    ap.add_argument("--data", default="/usr/share/games/fortunes")
    ap.add_argument("--validation", type=float, default=0.1)
    args = ap.parse_args()
    data = corpus_bytes(args.data)
    train = data[: len(data) - int(len(data) * args.validation)].decode("latin-1")
    vocabulary = set(words(train))
    if args.sample == "-":
        text = sys.stdin.read()
    else:
        with open(args.sample, encoding="utf-8", errors="replace") as f:
            text = f.read()
    found = words(text)
    hits = sum(w in vocabulary for w in found)
    share = 100 * hits / len(found) if found else 0.0
    print(f"{hits} of {len(found)} words occur in the training split ({share:.0f}%)")


if __name__ == "__main__":
    main()
