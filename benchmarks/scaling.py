#!/usr/bin/env python3
"""Training-step time and peak memory against sequence length T, for the tiny and medium widths.

Runs hattn_scaling (benchmarks/bench_scaling.cpp) once per (width, T), one process at a time, so
that each peak RSS is that run's own, then prints a markdown table, plots seconds per step and peak
RSS against T to docs/images/scaling.svg and writes the raw results as JSON. A width stops at the
first T that fails (e.g. out of memory) or whose step takes longer than --max-seconds.

Linux carries a parent's RSS at fork/exec into the child's peak (ru_maxrss), so the script stays
small while measuring: matplotlib is imported only afterwards, to plot. For a shared machine, each
run first waits (up to --idle-wait seconds) until other processes use under 10% of the CPUs; its
result records the share they took while it ran (other_cpu), and a run they took more than 10%
of is repeated (--retries), keeping the least disturbed.

Needs matplotlib (Debian: python3-matplotlib, scripts/deps.sh --bench):
    ninja -C build hattn_scaling
    /usr/bin/python3 benchmarks/scaling.py
"""

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WIDTHS = ("tiny", "medium")
TOKENS = tuple(2 ** k for k in range(8, 15))  # 256 ... 16384


def busy_seconds():
    """CPU seconds the whole machine has spent busy since boot (/proc/stat, all cores)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]  # user ... steal (guest is inside user)
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def wait_for_idle(max_wait, busy_fraction=0.1, sample=2.0):
    """Waits (up to max_wait seconds) until other processes use under busy_fraction of the CPUs."""
    waited = 0.0
    while waited < max_wait:
        before = busy_seconds()
        time.sleep(sample)
        waited += sample
        if (busy_seconds() - before) / (sample * os.cpu_count()) < busy_fraction:
            return
    print(f"scaling.py: the machine is still busy after {max_wait:.0f} s; measuring anyway", file=sys.stderr)


def measure(binary, width, tokens, batch, steps, checkpoint, timeout):
    """One hattn_scaling run: its JSON result, or None (with a message) when it fails. The result
    also gets other_cpu: the share of the machine's CPU time that other processes took meanwhile."""
    cmd = [binary, "--width", width, "--tokens", str(tokens), "--batch", str(batch), "--steps", str(steps)]
    if checkpoint:
        cmd.append("--checkpoint")
    start, busy, children = time.monotonic(), busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"scaling.py: {' '.join(cmd)}: no result within {timeout:.0f} s", file=sys.stderr)
        return None
    if run.returncode != 0:
        print(f"scaling.py: {' '.join(cmd)}: exit {run.returncode}: {run.stderr.strip()}", file=sys.stderr)
        return None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    other = max(0.0, busy_seconds() - busy - own) / ((time.monotonic() - start) * os.cpu_count())
    return dict(json.loads(run.stdout.strip().splitlines()[-1]), other_cpu=round(other, 3))


def measure_quietly(args, width, tokens, checkpoint):
    """measure() once the machine is idle, again (up to --retries times) while other processes took
    over 10% of the CPUs during the run; keeps the least disturbed result."""
    timeout = (args.steps + 1) * args.max_seconds + 120  # steps + warm-up + construction
    best = None
    for _ in range(1 + args.retries):
        wait_for_idle(args.idle_wait)
        r = measure(args.binary, width, tokens, args.batch, args.steps, checkpoint, timeout)
        if r is None:
            return None
        print(json.dumps(r), file=sys.stderr, flush=True)
        if best is None or r["other_cpu"] < best["other_cpu"]:
            best = r
        if best["other_cpu"] <= 0.1:
            break
    return best


def label(r):
    """The line a result belongs to: its width, and whether it was checkpointed."""
    return r["width"] + (" (checkpointing)" if r["checkpoint"] else "")


def table(results):
    """A markdown table of the results (a checkpointing column only when some run used it)."""
    ckpt = any(r["checkpoint"] for r in results)
    lines = ["| width | T | batch |" + (" checkpointing |" if ckpt else "")
             + " time/step (best) | tokens/s | µs/token | peak RSS |",
             "|---" * (7 + ckpt) + "|"]
    for r in results:
        s = r["seconds_per_step"]
        step = f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"
        per_token = s * 1e6 / (r["batch"] * r["tokens"])
        lines.append(f"| {r['width']} | {r['tokens']} | {r['batch']} |"
                     + (f" {'yes' if r['checkpoint'] else 'no'} |" if ckpt else "")
                     + f" {step} | {r['tokens_per_second']:,.0f} | {per_token:.1f} | {r['peak_rss_mib']:,.0f} MiB |")
    return "\n".join(lines)


def plot(results, path):
    """Two panels against T (log2 axis): seconds per step and peak RSS, one line per label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.hashsalt"] = "hattn-scaling"  # stable ids: the SVG changes only with the data

    fig, (time_ax, rss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(label(r) for r in results):
        rs = sorted((r for r in results if label(r) == name), key=lambda r: r["tokens"])
        t = [r["tokens"] for r in rs]
        style = dict(linestyle="--" if rs[0]["checkpoint"] else "-", marker="o", label=name,
                     color=f"C{WIDTHS.index(rs[0]['width'])}")  # a width's variants share a colour
        time_ax.plot(t, [r["seconds_per_step"] for r in rs], **style)
        rss_ax.plot(t, [r["peak_rss_mib"] for r in rs], **style)
    batch = sorted({r["batch"] for r in results})
    ticks = sorted({r["tokens"] for r in results})
    steps = "/".join(map(str, sorted({r["steps"] for r in results})))
    for ax, title, unit in ((time_ax, "training step time", f"seconds per step (best of {steps})"),
                            (rss_ax, "peak memory", "peak RSS (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel(f"sequence length T (batch {', '.join(map(str, batch))})")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, metadata={"Date": None})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "benchmarks", "hattn_scaling"),
                    help="the hattn_scaling executable (default: build/benchmarks/hattn_scaling)")
    ap.add_argument("--widths", default=",".join(WIDTHS), help="comma-separated subset of tiny,medium")
    ap.add_argument("--tokens", default=",".join(map(str, TOKENS)), help="comma-separated sequence lengths")
    ap.add_argument("--batch", type=int, default=1, help="sequences per step (default 1: T tokens per step)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run, after one warm-up")
    ap.add_argument("--checkpoint", action="store_true",
                    help="also run every (width, T) with activation checkpointing")
    ap.add_argument("--max-seconds", type=float, default=180,
                    help="stop a width after a T whose step takes longer than this")
    ap.add_argument("--idle-wait", type=float, default=300,
                    help="before each run, wait up to this many seconds for the machine to be idle")
    ap.add_argument("--retries", type=int, default=2,
                    help="run again (at most this often) when other processes took over 10%% of the CPUs")
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "images", "scaling.svg"), help="the SVG to write")
    ap.add_argument("--json", help="raw results (default: scaling.json in the build directory of --binary)")
    ap.add_argument("--load", help="plot and tabulate the results in this JSON file instead of measuring")
    args = ap.parse_args()

    if importlib.util.find_spec("matplotlib") is None:  # fail before measuring, without importing it
        sys.exit("scaling.py: needs matplotlib (Debian: scripts/deps.sh --bench; run with /usr/bin/python3)")

    if args.load:
        with open(args.load) as f:
            results = json.load(f)
    else:
        results = []
        variants = (False, True) if args.checkpoint else (False,)
        for width in args.widths.split(","):
            for checkpoint in variants:
                for tokens in map(int, args.tokens.split(",")):
                    r = measure_quietly(args, width, tokens, checkpoint)
                    if r is None:
                        break
                    results.append(r)
                    if r["seconds_per_step"] > args.max_seconds:
                        print(f"scaling.py: {label(r)}: {r['seconds_per_step']:.0f} s per step at T = {tokens}, "
                              f"over --max-seconds; stopping this width", file=sys.stderr)
                        break
        json_path = args.json or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.binary))),
                                              "scaling.json")
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
        print(f"scaling.py: raw results in {json_path}", file=sys.stderr)
    if not results:
        sys.exit("scaling.py: no results")
    print(table(results))
    plot(results, args.plot)
    print(f"scaling.py: plot in {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
