#!/usr/bin/env python3
"""Compare hattn with the PyTorch reference (tools/hattn_reference.py) on the benchmark presets.

For each preset, alternating between the two implementations so that a change in machine load
hits both alike:

    pytorch train, hattn train, pytorch inference, hattn inference, next preset ...

every measurement in its own subprocess, whose peak resident set size is read from the kernel
(os.wait4's rusage of that child). Training is one step of zero_grad + forward (dropout on) +
cross-entropy + backward + AdamW (lr 3e-4); `ckpt` is hattn's training step with gradient
checkpointing (BM_TrainStepCheckpointed) against PyTorch's plain training step (measured once per
preset and shared with `train`); inference is softmax probabilities (B, T, V) with no gradient,
`into` the same written into one reused buffer (BM_PredictInto, Decoder::predict(ids, out))
against PyTorch's inference (shared with `infer`). PyTorch runs with torch.set_num_threads(1) and (2) and the faster is reported; hattn
runs hattn_bench (BM_TrainStep/<preset>, BM_Predict/<preset>) on all its threads. Each side
takes one untimed warm-up step, then the mean over --steps timed steps.

MFU uses hattn's analytic model FLOPs (benchmarks/bench_model.cpp) for both sides and the sgemm
peak hattn_bench measures (best of ten 2048^3 hattn::gemm calls), once before the first and once
after the last measurement, the higher kept: load from other processes only lowers it.

Run with Debian's python3-torch:
    /usr/bin/python3 benchmarks/compare_pytorch.py --presets tiny,medium --steps 5
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (vocab, tokens T, heads, d_model, levels, batch); the same as bench_model.cpp.
PRESETS = {
    "tiny": (256, 256, 4, 64, 3, 8),
    "medium": (8192, 512, 8, 256, 3, 8),
    "seed": (50257, 512, 12, 768, 5, 8),
}
MODES = ("train", "ckpt", "infer", "into")
# The PyTorch measurement each hattn mode is compared with.
TORCH_MODE = {"train": "train", "ckpt": "train", "infer": "infer", "into": "infer"}


# ----------------------------------------------------------------------------------------------
# PyTorch worker (runs in a subprocess: --torch-worker)

def torch_worker(preset, mode, steps, threads):
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from hattn_reference import Decoder

    vocab, tokens, heads, d, levels, batch = PRESETS[preset]
    torch.manual_seed(0)
    model = Decoder(vocab, tokens, heads, d, levels)
    ids = torch.randint(vocab, (batch, tokens))
    targets = torch.cat([ids[:, 1:], torch.full((batch, 1), -100)], dim=1)

    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)

        def step():
            optimizer.zero_grad()
            logits = model(ids)  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=-100)
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(ids, training=False)  # (B, T, V) probabilities

    results = {}
    for n in threads:
        torch.set_num_threads(n)
        step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        results[n] = (time.perf_counter() - t0) / steps
    best = min(results, key=results.get)
    print(json.dumps({"seconds": results[best], "threads": best,
                      "by_threads": {str(k): v for k, v in results.items()}}))


# ----------------------------------------------------------------------------------------------
# Driver

def run_measured(cmd, env=None):
    """Runs cmd (in env, default this process's); returns (stdout, peak RSS in MiB of that process alone)."""
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()}")
        out.seek(0)
        return out.read(), usage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def hattn_json(stdout):
    data = json.loads(stdout)
    if not data["benchmarks"]:
        raise RuntimeError("hattn_bench ran no benchmark (filter matched nothing)")
    return data["benchmarks"][0]


def seconds_of(bench):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[bench["time_unit"]]
    return bench["real_time"] * scale


def measure_peak(bench_exe):
    """Returns (BM_SgemmPeak in GFLOP/s, hattn's gemm_info summary from the benchmark context)."""
    out, _ = run_measured([bench_exe, "--benchmark_filter=^BM_SgemmPeak", "--benchmark_format=json"])
    return hattn_json(out)["peak_GFLOPs"], json.loads(out).get("context", {}).get("hattn_gemm", "unknown")


def measure_torch_as(preset, mode, steps, threads, coretype):
    """PyTorch's best over `threads`, with OpenBLAS's kernel forced to `coretype` ("installed": the
    environment as it is)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--presets", preset,
           "--mode", mode, "--steps", str(steps), "--torch-threads", ",".join(map(str, threads))]
    env = dict(os.environ)
    if coretype != "installed":
        env["OPENBLAS_CORETYPE"] = coretype
    out, rss = run_measured(cmd, env)
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_mib"] = rss
    result["coretype"] = coretype
    return result


def measure_torch(preset, mode, steps, threads, coretypes):
    """PyTorch as installed, and at its best over --torch-coretypes (Debian's PyTorch calls the
    same OpenBLAS, whose kernel choice may be the generic one); returns the best, with the
    as-installed result under "installed"."""
    runs = [measure_torch_as(preset, mode, steps, threads, c) for c in coretypes.split(",") if c]
    best = min(runs, key=lambda r: r["seconds"])
    best = dict(best)
    best["installed"] = next((r for r in runs if r["coretype"] == "installed"), None)
    return best


def torch_version():
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip() or "not importable"


def cpu_pressure():
    """The kernel's CPU pressure, "some avg60" (% of time some task waited for a CPU), or None."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[2].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def measure_hattn(bench_exe, preset, mode, steps, peak):
    name = {"train": "BM_TrainStep", "ckpt": "BM_TrainStepCheckpointed", "infer": "BM_Predict",
            "into": "BM_PredictInto"}[mode]
    cmd = [bench_exe, f"--benchmark_filter=^{name}/{preset}/", "--benchmark_format=json",
           f"--hattn_iterations={steps}", f"--hattn_sgemm_peak_gflops={peak}"]
    out, rss = run_measured(cmd)
    b = hattn_json(out)
    return {"seconds": seconds_of(b), "threads": int(b["threads"]), "rss_mib": rss,
            "model_gflop": b["model_GFLOP_per_step"]}


def fmt_time(s):
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.2f} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="tiny,medium",
                    help="comma-separated subset of tiny,medium,seed (seed: minutes, ~7 GB for PyTorch)")
    ap.add_argument("--modes", default="train,infer", help="comma-separated subset of train,ckpt,infer,into")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement (after one warm-up)")
    ap.add_argument("--seed-steps", type=int, default=2, help="timed steps for the seed preset")
    ap.add_argument("--torch-threads", default="1,2", help="PyTorch thread counts to try; the best is kept")
    ap.add_argument("--torch-coretypes", default="installed,SkylakeX,Cooperlake,Haswell",
                    help="OpenBLAS kernels to run PyTorch with (installed: the environment as it is); the best "
                         "is kept, and the as-installed time is printed too. List only kernels this CPU supports")
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "benchmarks", "hattn_bench"),
                    help="path of the hattn_bench executable")
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.torch_threads.split(",")]
    presets = [p for p in args.presets.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    for p in presets:
        if p not in PRESETS:
            ap.error(f"unknown preset '{p}' (have {', '.join(PRESETS)})")
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode '{m}' (have {', '.join(MODES)})")

    if args.torch_worker:
        torch_worker(presets[0], args.mode, args.steps, threads)
        return

    if not os.access(args.bench, os.X_OK):
        ap.error(f"{args.bench} not found: build it with `ninja -C build hattn_bench` or pass --bench")
    try:
        commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    print(f"hattn source: {commit} (hattn_bench must be built from it); PyTorch: {torch_version()}")
    load_before, pressure_before = os.getloadavg(), cpu_pressure()
    peak, gemm = measure_peak(args.bench)
    print(f"hattn {gemm}")
    print(f"sgemm peak (hattn::gemm 2048^3, best of 10): {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for preset in presets:
        steps = args.seed_steps if preset == "seed" else args.steps
        vocab, tokens, heads, d, levels, batch = PRESETS[preset]
        torch_runs = {}  # PyTorch's training step and inference, each measured once per preset
        for mode in modes:
            kind = TORCH_MODE[mode]
            if kind not in torch_runs:
                torch_runs[kind] = measure_torch(preset, kind, steps, threads, args.torch_coretypes)
            torch_r = torch_runs[kind]
            inst = torch_r.get("installed")
            print(f"  {preset} {mode} pytorch: {fmt_time(torch_r['seconds'])} "
                  f"({torch_r['threads']} threads, OpenBLAS {torch_r['coretype']}), {torch_r['rss_mib']:.0f} MiB"
                  + (f"; as installed {fmt_time(inst['seconds'])}" if inst else ""), flush=True)
            hattn_r = measure_hattn(args.bench, preset, mode, steps, peak)
            print(f"  {preset} {mode} hattn:   {fmt_time(hattn_r['seconds'])} "
                  f"({hattn_r['threads']} threads), {hattn_r['rss_mib']:.0f} MiB", flush=True)
            rows.append({"preset": preset, "mode": mode, "steps": steps, "tokens": batch * tokens,
                         "pytorch": torch_r, "hattn": hattn_r})
    load_after, pressure_after = os.getloadavg(), cpu_pressure()
    peak_after, _ = measure_peak(args.bench)
    print(f"sgemm peak at the end: {peak_after:.1f} GFLOP/s", flush=True)
    peak = max(peak, peak_after)
    for r in rows:
        for side in ("pytorch", "hattn"):
            r[side]["mfu"] = r["hattn"]["model_gflop"] / r[side]["seconds"] / peak

    print()
    print("| config | mode | PyTorch time/step | hattn time/step | PyTorch tokens/s | hattn tokens/s "
          "| speedup (PyTorch/hattn time) | PyTorch peak RSS | hattn peak RSS | PyTorch MFU | hattn MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, h = r["pytorch"], r["hattn"]
        print(f"| {r['preset']} | {r['mode']} | {fmt_time(t['seconds'])} ({t['threads']}t) "
              f"| {fmt_time(h['seconds'])} ({h['threads']}t) "
              f"| {r['tokens'] / t['seconds']:,.0f} | {r['tokens'] / h['seconds']:,.0f} "
              f"| {t['seconds'] / h['seconds']:.2f}x | {t['rss_mib']:,.0f} MiB | {h['rss_mib']:,.0f} MiB "
              f"| {100 * t['mfu']:.1f}% | {100 * h['mfu']:.1f}% |")
    print()
    print(f"load average (1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}; after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if pressure_before is not None:
        print(f"CPU pressure (some avg60, % of time a task waited for a CPU) before: {pressure_before:.1f}; "
              f"after: {pressure_after:.1f}")
    print(f"MFU against {peak:.1f} GFLOP/s; model FLOPs per step: " +
          ", ".join(f"{r['preset']} {r['mode']} {r['hattn']['model_gflop']:.2f} G" for r in rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"commit": commit, "gemm": gemm, "peak_gflops": peak, "load_before": load_before, "load_after": load_after,
                       "cpu_pressure_before": pressure_before, "cpu_pressure_after": pressure_after,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
