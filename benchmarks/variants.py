#!/usr/bin/env python3
"""Which tree learns? Trains the tool's variants side by side and writes docs/variants.md.

    ninja -C build hattn_cli hattn_scaling_variants
    /usr/bin/python3 benchmarks/variants.py corpus  [--presets tiny small] [--seeds 0 1 2] [--steps N]
    /usr/bin/python3 benchmarks/variants.py listops [--presets tiny small] [--seeds 0 1 2] [--steps N]
    /usr/bin/python3 benchmarks/variants.py cost    [--tokens 256 512 ... 16384]
    /usr/bin/python3 benchmarks/variants.py report

corpus   `hattn train` on the default corpus (bytes) for every variant, preset and seed: validation
         bits per byte against steps and against wall-clock seconds (metrics.jsonl).
listops  `hattn train --task listops`, then `hattn eval --task listops` on 2000 examples of another
         seed: accuracy against the majority class.
cost     hattn_scaling_variants (benchmarks/bench_scaling.cpp): one training step's time and peak
         memory against T, once with leaf chunks of 32 rows (levels grow with T: log2(T / 32)) and
         once with the levels fixed at 3 (chunks grow with T).
report   the tables and plots of the results into docs/variants.md, between its
         `<!-- variants.py: NAME -->` ... `<!-- /variants.py -->` markers (the prose around them is
         written by hand), and docs/images/variants_*.svg.

Every run appends one record to benchmarks/results/variants.json and a part skips the runs already
recorded, so a part can be stopped and resumed, and the report is regenerated from the committed
results. Runs go one at a time, each after the machine is idle (benchmarks/scaling.py's check);
a record keeps the share of the CPUs other processes took while it ran (other_cpu).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import scaling  # noqa: E402  (busy_seconds, wait_for_idle)

RESULTS = os.path.join(HERE, "results", "variants.json")
DOC = os.path.join(ROOT, "docs", "variants.md")
IMAGES = os.path.join(ROOT, "docs", "images")
VARIANTS = ("replace", "residual", "pooled", "dense", "dense3")
COST_VARIANTS = ("replace", "residual", "pooled", "dense")
# The comparison's protocol: the learning rate and dropout every run of a preset gets, passed
# explicitly so that a change of the tool's defaults (tiny's main-job defaults: lr 5e-3, no dropout)
# does not change what a recorded command means.
PROTOCOL = {"tiny": ["--lr", "0.002", "--dropout", "on"], "small": ["--lr", "0.001", "--dropout", "on"]}
DEFAULT_STEPS = {("corpus", "tiny"): 1500, ("corpus", "small"): 3000, ("listops", "tiny"): 1500,
                 ("listops", "small"): 3000}


def load():
    if not os.path.exists(RESULTS):
        return []
    with open(RESULTS) as f:
        return json.load(f)


def save(records):
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    os.replace(tmp, RESULTS)


def machine():
    """The CPU model (lscpu) and the GEMM line the tool prints."""
    model = "unknown"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
        if line.startswith("CPU family:"):
            model += f", family {line.split(':', 1)[1].strip()}"
        if line.startswith("Model:"):
            model += f" model {line.split(':', 1)[1].strip()}"
    return model


def available_mib():
    """MemAvailable of /proc/meminfo, in MiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def timed(cmd, timeout, check=True):
    """Runs cmd once the machine is idle: (CompletedProcess, seconds, other_cpu). A failed run ends
    the script with its output, or with check=False is returned as it is."""
    scaling.wait_for_idle(120)
    start, busy = time.monotonic(), scaling.busy_seconds()
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = time.monotonic() - start
    own = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    other = max(0.0, scaling.busy_seconds() - busy - own) / (seconds * os.cpu_count())
    if run.returncode != 0 and check:
        raise SystemExit(f"variants.py: {' '.join(cmd)}: exit {run.returncode}\n{run.stdout[-2000:]}{run.stderr}")
    return run, seconds, round(other, 3)


def read_metrics(path):
    """(training lines, validation lines) of a metrics.jsonl, each a list of dicts."""
    train, val = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            (val if "val_loss" in r else train).append(r)
    return train, val


def train_part(args, part):
    records = load()
    hattn = os.path.join(args.build, "cli", "hattn")
    cpu = machine()
    for preset in args.presets:
        steps = args.steps or DEFAULT_STEPS[(part, preset)]
        for variant in args.variants:
            for seed in args.seeds:
                key = dict(part=part, preset=preset, variant=variant, seed=seed, steps=steps)
                if any(all(r.get(k) == v for k, v in key.items()) for r in records):
                    continue
                out = os.path.relpath(os.path.join(args.runs, part, f"{preset}-{variant}-s{seed}-{steps}"))
                cmd = [hattn, "train", "--preset", preset, "--variant", variant, "--seed", str(seed),
                       "--steps", str(steps), "--out", out, "--eval-every", str(args.eval_every),
                       "--save-every", "0", "--sample-tokens", "0", "--threads", str(args.threads)] + PROTOCOL[preset]
                if part == "listops":
                    cmd += ["--task", "listops"]
                if os.path.exists(out):
                    subprocess.run(["rm", "-rf", out], check=True)
                print(f"variants.py: {' '.join(cmd)}", file=sys.stderr, flush=True)
                run, seconds, other = timed(cmd, timeout=6 * 3600)
                train, val = read_metrics(os.path.join(out, "metrics.jsonl"))
                at = {r["step"]: r["seconds"] for r in train}
                gemm = next((l for l in run.stdout.splitlines() if l.startswith("gemm:")), "")
                params = int(re.search(r"model: (\d+) parameters", run.stdout).group(1))
                record = dict(key, parameters=params, seconds=round(seconds, 2), other_cpu=other, cpu=cpu,
                              gemm=gemm, threads=args.threads, command=" ".join(cmd[1:]),
                              # the median step: evaluations and saves fall between some steps
                              seconds_per_step=round(statistics.median(
                                  b["seconds"] - a["seconds"] for a, b in zip(train, train[1:])), 5),
                              val=[[v["step"], round(at.get(v["step"], train[-1]["seconds"]), 2), v["val_loss"]]
                                   + ([v["val_bits_per_byte"]] if part == "corpus" else [v["val_accuracy"]])
                                   for v in val])
                if part == "listops":
                    ev, _, _ = timed([hattn, "eval", "--checkpoint", os.path.join(out, "model.safetensors"),
                                      "--task", "listops", "--listops-examples", "2000"], timeout=3600)
                    m = re.search(r"accuracy ([0-9.]+)% \((\d+) of (\d+)\), majority class ([0-9.]+)%", ev.stdout)
                    record.update(accuracy=float(m.group(1)) / 100, majority=float(m.group(4)) / 100,
                                  eval_examples=int(m.group(3)))
                records.append(record)
                save(records)
                print(f"variants.py: {json.dumps(record)[:300]}", file=sys.stderr, flush=True)


def cost_part(args):
    records = load()
    binary = os.path.join(args.build, "benchmarks", "hattn_scaling_variants")
    cpu = machine()
    for sweep in ("grow", "fixed"):
        for variant in COST_VARIANTS:
            if variant == "dense" and sweep == "fixed":
                continue  # no tree: one sweep says it all
            previous = None  # (tokens, peak RSS in MiB) of the last measured T
            for tokens in args.tokens:
                levels = 3 if sweep == "fixed" else max(3, min(9, (tokens // 32).bit_length() - 1))
                key = dict(part="cost", sweep=sweep, variant=variant, tokens=tokens)
                done = next((r for r in records if all(r.get(k) == v for k, v in key.items())), None)
                if done is not None:
                    if "failed" in done:
                        break
                    previous = (tokens, done["peak_rss_mib"])
                    continue
                # Memory at most quadratic in T: skip a T the last one says would not fit.
                if previous and previous[1] * (tokens / previous[0]) ** 2 > 0.8 * available_mib():
                    need = previous[1] * (tokens / previous[0]) ** 2
                    print(f"variants.py: {variant} at T = {tokens} could need {need:,.0f} MiB; stopping", file=sys.stderr)
                    records.append(dict(key, levels=levels, failed=f"could need {need / 1024:.0f} GiB", cpu=cpu))
                    save(records)
                    break
                cmd = [binary, "--variant", variant, "--levels", str(levels), "--tokens", str(tokens),
                       "--batch", "1", "--steps", "3"]
                print(f"variants.py: {' '.join(cmd)}", file=sys.stderr, flush=True)
                try:
                    run, _, other = timed(cmd, timeout=args.max_seconds * 4 + 120, check=False)
                except subprocess.TimeoutExpired:
                    print(f"variants.py: no result within the limit; {variant} stops at T = {tokens}", file=sys.stderr)
                    break
                if run.returncode != 0:  # e.g. out of memory
                    print(f"variants.py: exit {run.returncode} ({run.stderr.strip()[-300:]}); {variant} stops at "
                          f"T = {tokens}", file=sys.stderr)
                    records.append(dict(key, levels=levels, failed=f"exit {run.returncode}", cpu=cpu,
                                        command=" ".join(os.path.relpath(c, ROOT) if c == binary else c for c in cmd)))
                    save(records)
                    break
                r = json.loads(run.stdout.strip().splitlines()[-1])
                records.append(dict(key, levels=levels, chunk=tokens // 2 ** levels if variant != "dense" else tokens,
                                    seconds_per_step=r["seconds_per_step"], peak_rss_mib=r["peak_rss_mib"],
                                    parameters=r["parameters"], other_cpu=other, cpu=cpu,
                                    command=" ".join(os.path.relpath(c, ROOT) if c == binary else c for c in cmd)))
                save(records)
                print(f"variants.py: {json.dumps(records[-1])}", file=sys.stderr, flush=True)
                previous = (tokens, r["peak_rss_mib"])
                if r["seconds_per_step"] > args.max_seconds:
                    break


# ---------------------------------------------------------------------------------------------------
# report


def spread(values, fmt):
    """'mean (min - max)' of values, or the one value."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ({fmt.format(min(values))} - {fmt.format(max(values))})"


def at_time(run, t):
    """A run's last validation figure at or before t seconds (None before its first)."""
    best = None
    for step, seconds, loss, figure in run["val"]:
        if seconds <= t:
            best = figure
    return best


def groups(records, part):
    """{(preset, steps): {variant: [runs]}} in the order of VARIANTS."""
    out = {}
    for r in records:
        if r["part"] == part:
            out.setdefault((r["preset"], r["steps"]), {}).setdefault(r["variant"], []).append(r)
    return {k: dict(sorted(v.items(), key=lambda kv: VARIANTS.index(kv[0]))) for k, v in sorted(out.items())}


def shown(command):
    """A recorded command as the docs show it: paths relative to the repository."""
    return command.replace(ROOT + "/", "")


def corpus_tables(records):
    lines = []
    for (preset, steps), by_variant in groups(records, "corpus").items():
        runs = [r for rs in by_variant.values() for r in rs]
        t_equal = min(r["val"][-1][1] for r in runs)  # every run has reached it
        seeds = sorted({r["seed"] for r in runs})
        lines += [f"**{preset}, {steps} steps** (seeds {', '.join(map(str, seeds))}; mean and range over seeds)", "",
                  "| variant | parameters | s/step | wall-clock | bits/byte at equal steps | "
                  f"bits/byte at equal time ({t_equal:.0f} s) |",
                  "|---|---|---|---|---|---|"]
        for variant, rs in by_variant.items():
            lines.append(f"| {variant} | {rs[0]['parameters']:,} | {spread([r['seconds_per_step'] for r in rs], '{:.3f}')}"
                         f" | {spread([r['val'][-1][1] for r in rs], '{:.0f} s')}"
                         f" | {spread([r['val'][-1][3] for r in rs], '{:.3f}')}"
                         f" | {spread([at_time(r, t_equal) for r in rs], '{:.3f}')} |")
        lines += ["", f"Command (per variant V and seed S): `hattn {shown(runs[0]['command'])}` with V and S in place "
                      f"of `{runs[0]['variant']}` and `{runs[0]['seed']}`; {runs[0]['cpu']}; `{runs[0]['gemm']}`.", ""]
    return "\n".join(lines)


def listops_tables(records):
    lines = []
    for (preset, steps), by_variant in groups(records, "listops").items():
        runs = [r for rs in by_variant.values() for r in rs]
        seeds = sorted({r["seed"] for r in runs})
        lines += [f"**{preset}, {steps} steps** (seeds {', '.join(map(str, seeds))}; accuracy on "
                  f"{runs[0]['eval_examples']} generated examples of seed 2, mean and range over seeds)", "",
                  "| variant | parameters | s/step | accuracy | majority class | validation loss (answer) |",
                  "|---|---|---|---|---|---|"]
        for variant, rs in by_variant.items():
            lines.append(f"| {variant} | {rs[0]['parameters']:,} | {spread([r['seconds_per_step'] for r in rs], '{:.3f}')}"
                         f" | {spread([100 * r['accuracy'] for r in rs], '{:.1f}%')}"
                         f" | {100 * rs[0]['majority']:.1f}% | {spread([r['val'][-1][2] for r in rs], '{:.3f}')} |")
        lines += ["", f"Command (per variant and seed): `hattn {shown(runs[0]['command'])}`, then `hattn eval --checkpoint .../model.safetensors "
                      f"--task listops --listops-examples 2000`; {runs[0]['cpu']}; `{runs[0]['gemm']}`.", ""]
    return "\n".join(lines)


def cost_tables(records):
    lines = []
    for sweep, title in (("grow", "leaf chunks of 32 rows, levels log2(T / 32)"), ("fixed", "levels fixed at 3")):
        rs = [r for r in records if r["part"] == "cost" and (r["sweep"] == sweep or r["variant"] == "dense")]
        failed = [r for r in rs if "failed" in r]
        rs = [r for r in rs if "failed" not in r]
        if not rs:
            continue
        tokens = sorted({r["tokens"] for r in rs})
        variants = [v for v in COST_VARIANTS if any(r["variant"] == v for r in rs)]
        lines += [f"**{title}**: seconds per training step (batch 1, best of 3) / peak RSS", "",
                  "| T | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
        for t in tokens:
            cells = []
            for v in variants:
                r = next((r for r in rs if r["variant"] == v and r["tokens"] == t), None)
                cells.append("-" if r is None else f"{r['seconds_per_step']:.3f} s / {r['peak_rss_mib']:,.0f} MiB")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines += [""] + [f"Not measured: {r['variant']} at T = {r['tokens']} ({r['failed']})." for r in failed]
        example = next((r for r in rs if r["variant"] != "dense"), rs[0])
        lines += ["", f"Command: `{example['command']}` (per T and variant; levels {'log2(T / 32)' if sweep == 'grow' else '3'}, "
                      f"the dense baseline with no tree in both tables); {example['cpu']}.", ""]
    return "\n".join(lines)


def plots(records):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.hashsalt"] = "hattn-variants"
    written = []
    for part, figure, ylabel in (("corpus", 3, "validation bits per byte"), ("listops", 3, "held-out accuracy")):
        for (preset, steps), by_variant in groups(records, part).items():
            fig, ax = plt.subplots(figsize=(6.5, 4))
            for i, (variant, rs) in enumerate(by_variant.items()):
                for j, r in enumerate(rs):
                    ax.plot([v[1] for v in r["val"]], [v[figure] for v in r["val"]], color=f"C{i}",
                            alpha=1.0 if j == 0 else 0.45, linewidth=1.4 if j == 0 else 0.8,
                            label=variant if j == 0 else None)
            ax.set_xlabel("wall-clock seconds (2 cores)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{part}: {preset}, {steps} steps, one line per seed")
            ax.grid(alpha=0.3)
            ax.legend()
            path = os.path.join(IMAGES, f"variants_{part}_{preset}.svg")
            fig.tight_layout()
            fig.savefig(path, metadata={"Date": None})  # no timestamp: the same records give the same file
            plt.close(fig)
            written.append(path)
    cost = [r for r in records if r["part"] == "cost" and "failed" not in r]
    if cost:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, sweep, title in ((axes[0], "grow", "chunks of 32, levels grow"), (axes[1], "fixed", "levels fixed at 3")):
            for i, v in enumerate(COST_VARIANTS):
                rs = sorted((r for r in cost if r["variant"] == v and (r["sweep"] == sweep or v == "dense")),
                            key=lambda r: r["tokens"])
                if rs:
                    ax.plot([r["tokens"] for r in rs], [r["seconds_per_step"] for r in rs], marker="o",
                            color=f"C{i}", label=v)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length T (batch 1)")
            ax.set_ylabel("seconds per training step")
            ax.set_title(title)
            ax.grid(alpha=0.3, which="both")
            ax.legend()
        fig.tight_layout()
        path = os.path.join(IMAGES, "variants_cost.svg")
        fig.savefig(path, metadata={"Date": None})  # no timestamp: the same records give the same file
        plt.close(fig)
        written.append(path)
    return written


def report(_args):
    records = load()
    sections = {"corpus": corpus_tables(records), "listops": listops_tables(records), "cost": cost_tables(records)}
    with open(DOC) as f:
        doc = f.read()
    for name, text in sections.items():
        pattern = re.compile(rf"(<!-- variants.py: {name} -->\n).*?(<!-- /variants.py -->)", re.S)
        if not pattern.search(doc):
            raise SystemExit(f"variants.py: {DOC} has no '<!-- variants.py: {name} -->' section")
        doc = pattern.sub(lambda m: m.group(1) + (text or "(not measured yet)\n") + "\n" + m.group(2), doc)
    with open(DOC, "w") as f:
        f.write(doc)
    for path in plots(records):
        print(f"wrote {os.path.relpath(path, ROOT)}")
    print(f"wrote {os.path.relpath(DOC, ROOT)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    for part in ("corpus", "listops"):
        p = sub.add_parser(part)
        p.add_argument("--presets", nargs="+", default=["tiny"], choices=["tiny", "small"])
        p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
        p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        p.add_argument("--steps", type=int, default=0, help="0: the preset's default (DEFAULT_STEPS)")
        p.add_argument("--eval-every", type=int, default=100)
        p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("cost")
    p.add_argument("--tokens", nargs="+", type=int, default=[2 ** k for k in range(8, 15)])
    p.add_argument("--max-seconds", type=float, default=60, help="a variant stops after a step this slow")
    sub.add_parser("report")
    for p in sub.choices.values():
        p.add_argument("--build", default=os.path.join(ROOT, "build"))
        p.add_argument("--runs", default=os.path.join(ROOT, "runs", "variants"))
    args = ap.parse_args()
    if args.part in ("corpus", "listops"):
        train_part(args, args.part)
    elif args.part == "cost":
        cost_part(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
