"""Generate the optimizer, clipping and schedule fixtures tests/fixtures/optim_*.safetensors.

Run from anywhere with Debian's python3-torch:

    /usr/bin/python3 tools/make_optimizer_fixtures.py [--out DIR]

optim_adam.safetensors: four small tensors (a linear weight and bias, a LayerNorm weight, an
embedding) and five fixed gradients per tensor. Five steps of torch.optim.Adam / torch.optim.AdamW
(foreach=False) with the given gradients, with and without torch.nn.utils.clip_grad_norm_, each run
once in float32 and once in float64 from the same float32 starting values and gradients.
AdamW decays only the linear weight (two param groups, weight_decay 0.1 and 0), as
hattn::default_weight_decay selects. One run also sets the learning rate of each step from the
warmup + cosine schedule.

optim_schedule.safetensors: warmup + cosine learning rates for several configurations, including a
zero warmup, a schedule that is all warmup, a constant tail and steps past the total.

Tensors (all row-major, little-endian):
  param.<name>            F32  starting values
  grad.<k>.<name>         F32  the gradient handed to step k (k = 0..4)
  <dtype>.<run>.<k>.<name>     F32 or F64 (dtype f32 / f64): the values after step k
  <dtype>.<run>.norm      the global gradient norm clip_grad_norm_ returned at each step (clip runs)
  lr.<run>                F64  the learning rate of each step
  schedule.<i>            F64  lr(step) for step = 0 .. len-1 of schedule configuration i
Metadata "config" is a JSON object describing all of it. Generation is deterministic.
"""

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures")

# name, shape, decayed by AdamW (hattn::default_weight_decay: 2-D ".weight" not a norm or embedding)
PARAMS = [
    ("fc.weight", (4, 3), True),
    ("fc.bias", (4,), False),
    ("norm.weight", (3,), False),
    ("word_embedding.weight", (5, 3), False),
]
STEPS = 5
# Per-step gradient scale: global norms of about 0.3, 2.9, 0.1, 5.8, 0.6, so clipping at 1.0 acts on
# steps 1 and 3 only.
GRAD_SCALES = [0.05, 0.5, 0.02, 1.0, 0.1]
LR, BETAS, EPS, WEIGHT_DECAY, MAX_NORM = 1e-2, (0.9, 0.999), 1e-8, 0.1, 1.0
TRAJECTORY_SCHEDULE = dict(peak_lr=1e-2, min_lr=1e-3, warmup_steps=2, total_steps=5)
# run name -> (optimizer, clip, scheduled lr)
RUNS = {
    "adam": ("adam", False, False),
    "adam_clip": ("adam", True, False),
    "adamw": ("adamw", False, False),
    "adamw_clip": ("adamw", True, False),
    "adamw_schedule_clip": ("adamw", True, True),
}
SCHEDULES = [
    dict(peak_lr=1e-3, min_lr=1e-4, warmup_steps=10, total_steps=100, count=120),
    dict(peak_lr=3e-4, min_lr=0.0, warmup_steps=0, total_steps=50, count=60),
    dict(peak_lr=1.0, min_lr=0.1, warmup_steps=5, total_steps=5, count=10),
    dict(peak_lr=2e-3, min_lr=2e-3, warmup_steps=3, total_steps=20, count=25),
    dict(peak_lr=0.5, min_lr=0.05, warmup_steps=1, total_steps=2, count=4),
]


def warmup_cosine(step, peak_lr, min_lr, warmup_steps, total_steps):
    """hattn::WarmupCosine::lr (include/hattn/train/schedule.hpp), the same formula."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_reread(path, tensors):
    """The file at `path` parses back to exactly `tensors` (list of (name, tensor)), in order."""
    back, _, names = read_safetensors(path)
    assert names == [n for n, _ in tensors]
    for name, t in tensors:
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name


def run(kind, clip, scheduled, start, grads, dtype):
    params = [torch.nn.Parameter(start[name].to(dtype).clone()) for name, _, _ in PARAMS]
    if kind == "adam":
        opt = torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, foreach=False)
    else:
        decay = [p for p, (_, _, d) in zip(params, PARAMS) if d]
        rest = [p for p, (_, _, d) in zip(params, PARAMS) if not d]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                 {"params": rest, "weight_decay": 0.0}],
                                lr=LR, betas=BETAS, eps=EPS, foreach=False)
    values, norms, lrs = [], [], []
    for k in range(STEPS):
        lr = warmup_cosine(k, **TRAJECTORY_SCHEDULE) if scheduled else LR
        for group in opt.param_groups:
            group["lr"] = lr
        lrs.append(lr)
        opt.zero_grad()
        for p, (name, _, _) in zip(params, PARAMS):
            p.grad = grads[k][name].to(dtype).clone()
        if clip:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, MAX_NORM)))
        opt.step()
        values.append({name: p.detach().clone() for p, (name, _, _) in zip(params, PARAMS)})
    return values, norms, lrs


def make_adam(out):
    gen = torch.Generator().manual_seed(20240611)
    start = {name: torch.randn(shape, generator=gen) for name, shape, _ in PARAMS}
    start["norm.weight"] = 1.0 + 0.1 * start["norm.weight"]  # LayerNorm-like weights near 1
    grads = [{name: GRAD_SCALES[k] * torch.randn(shape, generator=gen) for name, shape, _ in PARAMS}
             for k in range(STEPS)]
    tensors = [(f"param.{n}", start[n]) for n, _, _ in PARAMS]
    tensors += [(f"grad.{k}.{n}", grads[k][n]) for k in range(STEPS) for n, _, _ in PARAMS]
    results = {}
    for dtype, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
        for name, (kind, clip, scheduled) in RUNS.items():
            values, norms, lrs = run(kind, clip, scheduled, start, grads, dtype)
            results[(tag, name)] = values
            tensors += [(f"{tag}.{name}.{k}.{n}", values[k][n]) for k in range(STEPS) for n, _, _ in PARAMS]
            if clip:
                tensors.append((f"{tag}.{name}.norm", torch.tensor(norms, dtype=dtype)))
            if tag == "f64":
                tensors.append((f"lr.{name}", torch.tensor(lrs, dtype=torch.float64)))

    # The fixture must be able to tell the variants apart: AdamW moves only the decayed tensor away
    # from Adam (the others bitwise equal), and clipping changes every trajectory.
    for tag in ("f32", "f64"):
        last = STEPS - 1
        for n, _, decayed in PARAMS:
            a, w = results[(tag, "adam")][last][n], results[(tag, "adamw")][last][n]
            assert (a - w).abs().max() > 1e-5 if decayed else torch.equal(a, w), (tag, n)
            c = results[(tag, "adam_clip")][last][n]
            assert (a - c).abs().max() > 1e-4, (tag, n)

    config = dict(params=[dict(name=n, shape=list(s), decayed=d) for n, s, d in PARAMS], steps=STEPS,
                  grad_scales=GRAD_SCALES, lr=LR, beta1=BETAS[0], beta2=BETAS[1], eps=EPS,
                  weight_decay=WEIGHT_DECAY, max_norm=MAX_NORM, schedule=TRAJECTORY_SCHEDULE,
                  runs={k: dict(optimizer=v[0], clip=v[1], scheduled=v[2]) for k, v in RUNS.items()})
    path = os.path.join(out, "optim_adam.safetensors")
    write_safetensors(path, tensors, {"config": json.dumps(config), "torch": torch.__version__,
                                      "generator": "tools/make_optimizer_fixtures.py"})
    check_reread(path, tensors)
    return path


def make_schedule(out):
    tensors = []
    for i, s in enumerate(SCHEDULES):
        cfg = {k: v for k, v in s.items() if k != "count"}
        tensors.append((f"schedule.{i}", torch.tensor([warmup_cosine(k, **cfg) for k in range(s["count"])],
                                                      dtype=torch.float64)))
    path = os.path.join(out, "optim_schedule.safetensors")
    write_safetensors(path, tensors, {"config": json.dumps(SCHEDULES), "torch": torch.__version__,
                                      "generator": "tools/make_optimizer_fixtures.py"})
    check_reread(path, tensors)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: tests/fixtures)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for path in (make_adam(args.out), make_schedule(args.out)):
        print(f"{os.path.basename(path):28s} {os.path.getsize(path):8d} bytes")


if __name__ == "__main__":
    main()
