#!/usr/bin/env python3
"""Groups a `perf record` profile of hattn_bench into what the time goes to.

perf's own report lists TBB task bodies under their full template names; this folds them into the
hattn op that launched them (the `hattn::parallel_for<...>` argument) and folds OpenBLAS, libm and
kernel symbols into a few groups. Used for docs/performance.md:

    perf record -D 5000 -o perf.data build/benchmarks/hattn_bench \\
        --benchmark_filter=BM_TrainStep/medium --hattn_iterations=8
    python3 benchmarks/perf_summary.py perf.data

(-D skips the model's construction and warm-up step, so the profile is the steady state.)
"""

import argparse
import collections
import re
import subprocess

# parallel_for<hattn::ns::name<hattn::ns::inner<... : the function (and the op it serves) whose
# lambda a TBB task runs
TASK = re.compile(r"parallel_for<hattn::(?:\w+::)*(\w+)[<(](?:hattn::(?:\w+::)*(\w+)[<(])?")
LINE = re.compile(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)")


def group(dso, kind, sym):
    if kind == "k":
        return "kernel (page faults, scheduling)"
    if "sgemm_kernel" in sym:
        return "OpenBLAS sgemm kernel"
    if sym.startswith("sgemm_") or "sgemm_" in sym:
        return "OpenBLAS sgemm packing and beta"
    if "libm" in dso or sym.startswith(("expf", "logf", "__expf", "__ieee754_log")):
        return "libm exp/log"
    task = TASK.search(sym)
    if task:
        outer, inner = task.group(1), task.group(2)
        if outer == "AdamBase":
            return "hattn: AdamW update"
        if outer in ("softmax_for_rows", "for_each_row", "for_each_dropout_keep") and inner:
            return f"hattn: {inner} ({outer})"
        return f"hattn: {outer}"
    if sym.startswith("hattn_bench::"):
        return "benchmark body (code inlined into it)"
    if sym.startswith("hattn::") or "hattn::" in sym:
        return "hattn: " + re.sub(r"^(\w+::)*", "", re.sub(r"<.*", "", sym.split("(")[0]))
    if any(s in sym for s in ("memset", "memmove", "memcpy", "_M_fill")):
        return "memset / memcpy / fill"
    if "tbb" in dso or "yield" in sym:
        return "TBB runtime"
    return sym[:70]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="perf.data file")
    ap.add_argument("--top", type=int, default=15, help="groups to print")
    args = ap.parse_args()
    report = subprocess.run(["perf", "report", "-i", args.data, "--no-children", "--sort", "dso,symbol",
                             "--stdio"], capture_output=True, text=True, check=True).stdout
    share = collections.Counter()
    for line in report.splitlines():
        m = LINE.match(line)
        if m:
            share[group(m[2], m[3], m[4].strip())] += float(m[1])
    for name, pct in share.most_common(args.top):
        print(f"{pct:6.2f}%  {name}")


if __name__ == "__main__":
    main()
