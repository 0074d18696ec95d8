"""Generate the PyTorch parity fixtures in tests/fixtures/ from tools/hattn_reference.py.

Run from anywhere with Debian's python3-torch:

    /usr/bin/python3 tools/make_fixtures.py [--out DIR]

Every fixture is a safetensors file written by tools/safetensors_io.py (no safetensors package
needed). The format and the tensor names are described in tests/fixtures/README.md. Generation is
seeded and single-threaded, so rerunning it reproduces the files.

CONFIGS are the seed's model (their files predate the variants and must not change); VARIANT_CONFIGS
cover SPEC.md "Variants" (node_combine, summaries, mixer, seed_compat) and record those fields in
their config metadata.
"""

import argparse
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hattn_reference import (Decoder, HierarchicalAttention, notebook_masked,  # noqa: E402
                             pool_summaries, summary_allowed, summary_bounds)
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures")
IGNORE = -100
ADAM_STEPS = 3
ADAM_LR = 1e-3
SIZE_BUDGET = 2_900_000  # bytes, every file in the output directory together (optim_* included)

# name, levels, heads, d_model, vocab_size, sequence_length, batch, tokens, node_mask, blocks, seed,
# sections. Every fixture holds param, input and output; `grad` and `adam3` each add one more copy
# of the weights, so to stay within SIZE_BUDGET the Adam trajectory (elementwise, covered by three
# configs spanning full/aligned masks, padding and stacked blocks) is stored only for the small
# configs, and the d_model 64 config holds no gradients. All sections everywhere would be 3.3 MiB.
ALL, NO_ADAM, FORWARD = ("grad", "adam3"), ("grad",), ()
CONFIGS = [
    ("l1_h1_d8", 1, 1, 8, 11, 16, 2, 16, "aligned", 1, 1, ALL),
    ("l2_h2_d16_pad_full", 2, 2, 16, 37, 32, 2, 13, "full", 1, 2, ALL),
    ("l3_h4_d16_blocks2", 3, 4, 16, 50, 64, 2, 64, "aligned", 2, 3, NO_ADAM),
    ("l5_h2_d16", 5, 2, 16, 29, 64, 1, 64, "aligned", 1, 4, NO_ADAM),
    ("l5_h4_d32_pad_full", 5, 4, 32, 61, 64, 1, 45, "full", 1, 5, NO_ADAM),
    ("l1_h4_d64_pad", 1, 4, 64, 97, 40, 2, 37, "aligned", 1, 6, FORWARD),
    ("l2_h1_d8_blocks2_pad", 2, 1, 8, 13, 8, 3, 5, "aligned", 2, 7, ALL),
]
CONFIG_KEYS = ("levels", "heads", "d_model", "blocks", "node_mask", "vocab_size", "sequence_length",
               "batch", "tokens")

# SPEC.md "Variants": the seed's model is every field at its default. The configs above keep their
# original metadata (no variant keys); the variant configs below add these keys to theirs.
VARIANT_DEFAULTS = dict(node_combine="replace", summaries=0, mixer="hierarchical", seed_compat=False)
VARIANT_KEYS = tuple(VARIANT_DEFAULTS)

# Variant parity fixtures: the CONFIGS columns, then the variant fields that differ from the
# defaults. Sizes are kept small (d 8/16, short T); adam3 only where the weights are small.
RESIDUAL, NOTEBOOK, DENSE = dict(node_combine="residual"), dict(seed_compat=True), dict(mixer="dense")
VARIANT_CONFIGS = [
    # residual: padding (T 13, Tp 16, C 4), aligned
    ("residual_l2_h2_d16_pad", 2, 2, 16, 19, 32, 2, 13, "aligned", 1, 11, NO_ADAM, RESIDUAL),
    # residual: full mask, 2 blocks, padding (T 14, Tp 16, C 4)
    ("residual_l2_h2_d8_full_blocks2_pad", 2, 2, 8, 13, 16, 2, 14, "full", 2, 12, NO_ADAM, RESIDUAL),
    # k 3 divides no S_l (C 4: S_l 4, 8, 16), every level pooled
    ("pooled_k3_l3_h2_d8", 3, 2, 8, 17, 32, 1, 32, "aligned", 1, 13, NO_ADAM, dict(summaries=3)),
    # k 6: S_0 = 4 < k unchanged, S_1 = 8 and S_2 = 16 pooled (6 divides neither)
    ("pooled_k6_l3_h2_d8", 3, 2, 8, 13, 32, 2, 32, "aligned", 1, 14, ALL, dict(summaries=6)),
    # k 4, full mask: S_0 = 4 = k unchanged, S_1 = 8 and S_2 = 16 pooled
    ("pooled_k4_l3_h2_d8_full", 3, 2, 8, 13, 32, 1, 32, "full", 1, 15, NO_ADAM, dict(summaries=4)),
    # k 7 with padding (T 37, Tp 40, C 10: S_l 10, 20, 7 divides neither)
    ("pooled_k7_l2_h2_d16_pad", 2, 2, 16, 17, 48, 2, 37, "aligned", 1, 16, NO_ADAM, dict(summaries=7)),
    # k 2 and residual, padding (T 19, Tp 24, C 3: S_l 3, 6, 12; chunk 6 = rows 18..20 holds
    # padding rows and is the left sibling of the all-padding chunk 7)
    ("pooled_k2_residual_l3_h2_d8_pad", 3, 2, 8, 13, 24, 2, 19, "aligned", 1, 17, NO_ADAM,
     dict(summaries=2, node_combine="residual")),
    # dense mixer: T 21 (odd, no padding in dense), 2 blocks; levels 2 is given and unused
    ("dense_h2_d8_blocks2", 2, 2, 8, 17, 32, 2, 21, "aligned", 2, 18, NO_ADAM, DENSE),
    # seed_compat (the notebook's mask): T 64 = S (chunks of 16), and T 13 padded to 16 (chunks of 4)
    ("notebook_l2_h2_d16", 2, 2, 16, 13, 64, 1, 64, "aligned", 1, 19, NO_ADAM, NOTEBOOK),
    ("notebook_l2_h2_d8_pad", 2, 2, 8, 13, 16, 2, 13, "aligned", 1, 20, ALL, NOTEBOOK),
]

# The masking-defect fixture: chunks of 16, tokens from position 40 on changed, outputs at 32..39.
LEAK = dict(name="seed_leak", levels=2, heads=2, d_model=16, blocks=1, node_mask="aligned",
            vocab_size=50, sequence_length=64, batch=1, tokens=64, seed=8)
LEAK_FROM, LEAK_ROWS = 40, (32, 40)


# ---------------------------------------------------------------------------------------------
# model, inputs, loss

def variant(cfg):
    """The config's variant fields, defaults filled in."""
    return {k: cfg.get(k, v) for k, v in VARIANT_DEFAULTS.items()}


def config_dict(cfg):
    """The `config` metadata: CONFIG_KEYS, plus VARIANT_KEYS for the variant configs."""
    keys = CONFIG_KEYS + (VARIANT_KEYS if cfg.get("variant_keys") else ())
    return {k: cfg.get(k, VARIANT_DEFAULTS.get(k)) for k in keys}


def build_model(cfg):
    """float32 reference model, dropout 0, every LayerNorm perturbed off its identity init.
    The caller seeds the RNG."""
    model = Decoder(cfg["vocab_size"], cfg["sequence_length"], cfg["heads"], cfg["d_model"],
                    cfg["levels"], blocks=cfg["blocks"], node_mask=cfg["node_mask"], dropout=0.0,
                    **variant(cfg))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
    for p in model.state_dict().values():
        assert p.dtype == torch.float32
    return model


def make_inputs(cfg):
    """ids (B, T) in [0, V); targets = ids shifted left, last -100, plus a few -100 in one row."""
    b, t, v = cfg["batch"], cfg["tokens"], cfg["vocab_size"]
    ids = torch.randint(0, v, (b, t), dtype=torch.int64)
    targets = torch.full((b, t), IGNORE, dtype=torch.int64)
    targets[:, :-1] = ids[:, 1:]
    if t > 1:
        row = int(torch.randint(0, b, ()))
        k = min(3, max(1, (t - 1) // 4))
        cols = torch.randperm(t - 1)[:k]
        targets[row, cols] = IGNORE
    assert (targets != IGNORE).any()
    return ids, targets


def mean_cross_entropy(logits, targets):
    """Mean cross-entropy over positions whose target is not -100, checked against F.cross_entropy."""
    v = logits.shape[-1]
    flat, tflat = logits.reshape(-1, v), targets.reshape(-1)
    loss = F.cross_entropy(flat, tflat, ignore_index=IGNORE)
    keep = tflat != IGNORE
    manual = -torch.log_softmax(flat[keep], dim=-1).gather(1, tflat[keep][:, None]).mean()
    assert torch.allclose(loss, manual, rtol=1e-12, atol=0.0), (loss.item(), manual.item())
    return loss


def changed_from(ids, t, vocab_size):
    """ids with every position >= t replaced by a different id."""
    out = ids.clone()
    shift = torch.randint(1, vocab_size, out[:, t:].shape)
    out[:, t:] = (out[:, t:] + shift) % vocab_size
    return out


def check_causal(model, ids, vocab_size):
    """Outputs at positions < t are bitwise unchanged when ids >= t change, and position t does
    change (so the check is not vacuous), for every t in 1..T-1, logits and probabilities."""
    with torch.no_grad():
        logits, probs = model(ids), model(ids, training=False)
        for t in range(1, ids.shape[1]):
            other = changed_from(ids, t, vocab_size)
            logits2, probs2 = model(other), model(other, training=False)
            assert torch.equal(logits2[:, :t], logits[:, :t]), f"causality broken at t={t}"
            assert torch.equal(probs2[:, :t], probs[:, :t]), f"causality broken at t={t} (probs)"
            assert not torch.equal(logits2[:, t], logits[:, t]), f"position {t} ignores its own token"


def check_leaks(model, ids, vocab_size):
    """seed_compat is NOT causal: for some t, changing the ids from t on changes an output at a
    position < t. Returns the first such t and the largest change of logits before it."""
    with torch.no_grad():
        logits = model(ids)
        for t in range(1, ids.shape[1]):
            logits2 = model(changed_from(ids, t, vocab_size))
            if not torch.equal(logits2[:, :t], logits[:, :t]):
                return t, (logits2[:, :t] - logits[:, :t]).abs().max().item()
    raise AssertionError("the seed_compat (notebook) mask should leak later tokens into earlier rows")


def twin(model, cfg, **changes):
    """A reference model of `cfg` with `changes` to its fields, holding `model`'s weights (in
    model's dtype). Built under a forked RNG, so the caller's random stream is untouched."""
    with torch.random.fork_rng():
        other = build_model(dict(cfg, **changes))
    other.load_state_dict(model.state_dict())
    return other.to(next(model.parameters()).dtype)


def check_notebook_rounding():
    """notebook_masked in float64 equals the float32 add float32(s) + float32(-1e9), rounded back."""
    s = torch.tensor([0.0, -0.0, 0.3, -5.7, 31.9, 32.0, 33.0, -40.25, 95.99, 1e-30], dtype=torch.float64)
    expect = torch.from_numpy((s.numpy().astype("<f4") + np.float32(-1e9)).astype("<f8"))
    assert torch.equal(notebook_masked(s), expect)
    assert torch.equal(notebook_masked(s.float()), s.float() + (-1e9))
    assert (notebook_masked(s)[s.abs() < 32] == -1e9).all()


def check_variant(model, cfg, ids):
    """Checks specific to the variant of `cfg`, on the float64 `model`."""
    var = variant(cfg)
    with torch.no_grad():
        logits = model(ids)
        if var["node_combine"] == "residual":
            replace = twin(model, cfg, node_combine="replace")
            assert ([(n, v.shape) for n, v in replace.state_dict().items()]
                    == [(n, v.shape) for n, v in model.state_dict().items()]), "residual renames"
            assert not torch.equal(replace(ids), logits)
        if var["summaries"]:
            n = 2 ** cfg["levels"]
            tp = -(-cfg["tokens"] // n) * n
            sizes = [tp // n * 2 ** l for l in range(cfg["levels"])]
            k = var["summaries"]
            assert any(s > k for s in sizes), "the pooled config pools no level"
            seed = twin(model, cfg, summaries=0)
            assert not torch.equal(seed(ids), logits), "pooling changes nothing"
            # k >= every S_l: no level is pooled, the seed's function
            big = twin(model, cfg, summaries=max(sizes))
            assert torch.equal(big(ids), seed(ids))
            # ... and forcing the pooled path where S_l == k (one row per summary, summary b
            # visible to right rows i >= b) computes the same numbers
            for m in big.modules():
                if isinstance(m, HierarchicalAttention):
                    m.pools = lambda rows, m=m: rows >= m.summaries
            assert torch.equal(big(ids), seed(ids)), "the pooled path does not reduce to the seed"
            for s in sizes:
                x = torch.randn(3, s, cfg["d_model"], dtype=torch.float64)
                assert torch.equal(pool_summaries(x, s), x)
                assert torch.equal(summary_allowed(s, s, "aligned"), torch.ones(s, s).tril().bool())
                if s > k:  # blocks of floor(s/k) or ceil(s/k) rows; the means as one product
                    bounds = summary_bounds(s, k)
                    weights = torch.zeros(k, s, dtype=torch.float64)
                    for b in range(k):
                        assert bounds[b + 1] - bounds[b] in (s // k, -(-s // k))
                        weights[b, bounds[b]:bounds[b + 1]] = 1.0 / (bounds[b + 1] - bounds[b])
                    assert torch.allclose(pool_summaries(x, k), weights @ x, rtol=1e-14, atol=1e-15)
        if var["mixer"] == "dense":
            names = list(model.state_dict())
            assert not any("hier_attn" in n or "node_layers" in n for n in names)
            assert any(".attn1.self_attention.W_q.weight" in n for n in names)
            other_levels = 1 if cfg["levels"] != 1 else 2
            assert torch.equal(twin(model, cfg, levels=other_levels)(ids), logits), "dense reads levels"
        if var["seed_compat"]:
            # the float32 emulation is what makes float64 reproduce the notebook's float32 numbers
            nb32 = twin(model, cfg).float()
            assert torch.allclose(nb32(ids).double(), logits, rtol=0, atol=1e-4)
            causal = twin(model, cfg, seed_compat=False)
            assert not torch.allclose(causal(ids), logits, rtol=0, atol=1e-2)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def check_reread(path, tensors, metadata):
    back, meta, order = read_safetensors(path)
    assert meta == (None if metadata is None else {str(k): str(v) for k, v in metadata.items()})
    assert order == [n for n, _ in tensors]
    for name, t in tensors:
        assert back[name].dtype == t.dtype and torch.equal(back[name], t.cpu()), name


# ---------------------------------------------------------------------------------------------
# fixtures

def make_fixture(cfg, out_dir):
    """One parity fixture: weights, inputs, float64-computed outputs and loss, and (per
    cfg["sections"]) gradients and the weights after 3 Adam steps, all stored as float32."""
    torch.manual_seed(cfg["seed"])
    model32 = build_model(cfg)
    params = [(f"param.{k}", f32(v)) for k, v in model32.state_dict().items()]
    ids, targets = make_inputs(cfg)

    model = copy.deepcopy(model32).double()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fixed = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert fixed == ["pos_encoding.position_embedding_layer.weight"], fixed
    assert len(trainable) + 1 == len(params)

    if variant(cfg)["seed_compat"]:
        leak_at = check_leaks(model, ids, cfg["vocab_size"])
    else:
        check_causal(model, ids, cfg["vocab_size"])
    check_variant(model, cfg, ids)

    adam_model = copy.deepcopy(model)
    logits = model(ids)
    with torch.no_grad():
        probs = model(ids, training=False)
        assert torch.allclose(probs, torch.softmax(logits, dim=-1), rtol=0, atol=0)
    loss = mean_cross_entropy(logits, targets)
    loss.backward()
    grads = [(f"grad.{n}", f32(p.grad)) for n, p in trainable]

    opt = torch.optim.Adam([p for p in adam_model.parameters() if p.requires_grad], lr=ADAM_LR)
    for _ in range(ADAM_STEPS):
        opt.zero_grad()
        mean_cross_entropy(adam_model(ids), targets).backward()
        opt.step()
    adam = [(f"adam3.{k}", f32(v)) for k, v in adam_model.state_dict().items()]
    pos = "pos_encoding.position_embedding_layer.weight"
    assert torch.equal(adam_model.state_dict()[pos], model.state_dict()[pos])

    tensors = params + [
        ("input.ids", ids.to(torch.int32)),
        ("input.targets", targets.to(torch.int32)),
        ("output.logits", f32(logits)),
        ("output.probs", f32(probs)),
        ("output.loss", f32(loss.reshape(1))),
    ]
    if "grad" in cfg["sections"]:
        tensors += grads
    if "adam3" in cfg["sections"]:
        tensors += adam
    metadata = {"config": json.dumps(config_dict(cfg)), "generator": "tools/make_fixtures.py",
                "torch": torch.__version__, "seed": str(cfg["seed"]),
                "sections": ",".join(("param", "input", "output") + cfg["sections"])}
    if variant(cfg)["seed_compat"]:
        metadata["mask"] = ("notebook: scores + (-1e9) * tril(ones), leaf and node attention, the add "
                            "in float32: float64(float32(float32(s) + float32(-1e9))); NOT causal")
        metadata["leak"] = f"changing ids from {leak_at[0]} on changes earlier logits by up to {leak_at[1]!r}"
    path = os.path.join(out_dir, cfg["name"] + ".safetensors")
    write_safetensors(path, tensors, metadata)
    check_reread(path, tensors, metadata)
    return path, loss.item()


# The PyTorch-interop fixtures: parity configs' initial weights as a PyTorch user saves them (the
# notebook one: a checkpoint trained with the notebook's mask, loaded under seed_compat).
STATE_DICT_OF = ("l1_h1_d8", "notebook_l2_h2_d16")


def make_state_dict(cfg, out_dir):
    """`state_dict_<config>.safetensors`: the config's initial float32 state_dict as
    `safetensors.torch.save_file(model.state_dict(), path)` writes it: plain SPEC.md names, no
    "__metadata__" entry, tensors sorted by name (that function's order for tensors of one dtype).
    The weights are the `param.*` tensors of `<config>.safetensors`, which must already be in
    `out_dir`; the function asserts they are bitwise equal."""
    torch.manual_seed(cfg["seed"])
    state = build_model(cfg).state_dict()
    tensors = [(name, f32(state[name])) for name in sorted(state)]
    stored, _, _ = read_safetensors(os.path.join(out_dir, cfg["name"] + ".safetensors"))
    assert sorted(n for n in stored if n.startswith("param.")) == sorted(f"param.{n}" for n in state)
    for name, t in tensors:
        assert torch.equal(stored[f"param.{name}"], t), name
    path = os.path.join(out_dir, "state_dict_" + cfg["name"] + ".safetensors")
    write_safetensors(path, tensors, None)
    check_reread(path, tensors, None)
    return path


def notebook_variant(model, cfg):
    """`model` (float32) with the notebook's mask: the reference's seed_compat, same weights."""
    assert not variant(cfg)["seed_compat"] and cfg["node_mask"] == "aligned"
    return twin(model, cfg, seed_compat=True)


def make_seed_leak(out_dir):
    """Measures, in float32, how much the outputs at positions 32..39 move when the tokens from
    position 40 on change: the notebook's mask leaks, the causal reference does not."""
    cfg = LEAK
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg)
    notebook = notebook_variant(model, cfg)
    ids, _ = make_inputs(cfg)
    ids2 = changed_from(ids, LEAK_FROM, cfg["vocab_size"])
    lo, hi = LEAK_ROWS
    with torch.no_grad():
        nb1, nb2 = notebook(ids), notebook(ids2)
        ref1, ref2 = model(ids), model(ids2)
    leak_nb = (nb2[:, lo:hi] - nb1[:, lo:hi]).abs().max().item()
    leak_ref = (ref2[:, lo:hi] - ref1[:, lo:hi]).abs().max().item()
    before_nb = (nb2[:, :lo] - nb1[:, :lo]).abs().max().item()
    assert leak_nb > 0.0, "the notebook mask should leak future tokens into positions 32..39"
    assert leak_ref == 0.0, "the causal reference leaks"
    assert before_nb == 0.0, "the notebook mask should not reach across leaf chunks"
    assert not torch.equal(nb1, ref1)

    tensors = [(f"param.{k}", f32(v)) for k, v in model.state_dict().items()] + [
        ("input.ids", ids.to(torch.int32)),
        ("input.ids_changed", ids2.to(torch.int32)),
        ("output.logits", f32(nb1)),
        ("output.logits_changed", f32(nb2)),
    ]
    metadata = {"config": json.dumps(config_dict(cfg)), "generator": "tools/make_fixtures.py",
                "torch": torch.__version__, "seed": str(cfg["seed"]), "sections": "param,input,output",
                "mask": "notebook: scores + (-1e9) * tril(ones), leaf and node attention, float32",
                "changed_from": str(LEAK_FROM), "rows": f"{lo}..{hi - 1}",
                "leak_notebook": repr(leak_nb), "leak_reference": repr(leak_ref)}
    path = os.path.join(out_dir, cfg["name"] + ".safetensors")
    write_safetensors(path, tensors, metadata)
    check_reread(path, tensors, metadata)
    return path, leak_nb, leak_ref


def report(path, note):
    print(f"{os.path.basename(path):44s} {os.path.getsize(path):9d} bytes  {note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory (default tests/fixtures)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)

    check_notebook_rounding()

    paths = []

    def parity(row, variant_fields=None):
        name, levels, heads, d, v, s, b, t, mask, blocks, seed, sections = row
        cfg = dict(name=name, levels=levels, heads=heads, d_model=d, vocab_size=v, sequence_length=s,
                   batch=b, tokens=t, node_mask=mask, blocks=blocks, seed=seed, sections=sections)
        if variant_fields is not None:
            assert set(variant_fields) <= set(VARIANT_KEYS)
            cfg.update(variant_fields, variant_keys=True)
        path, loss = make_fixture(cfg, args.out)
        paths.append(path)
        report(path, f"loss {loss:.6f}")
        if name in STATE_DICT_OF:
            path = make_state_dict(cfg, args.out)
            paths.append(path)
            report(path, "PyTorch state_dict")

    for row in CONFIGS:
        parity(row)
    path, leak_nb, leak_ref = make_seed_leak(args.out)
    paths.append(path)
    report(path, f"leak at {LEAK_ROWS[0]}..{LEAK_ROWS[1] - 1}: notebook {leak_nb:.6g}, "
                 f"reference {leak_ref:g}")
    for row in VARIANT_CONFIGS:
        parity(row[:-1], row[-1])
    total = sum(os.path.getsize(p) for p in paths)
    print(f"total {total} bytes ({total / 1024 / 1024:.3f} MiB) written")
    everything = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out)
                     if os.path.isfile(os.path.join(args.out, f)))
    print(f"directory {everything} bytes (every file in {args.out})")
    assert total < SIZE_BUDGET and everything < SIZE_BUDGET, \
        f"fixtures exceed the {SIZE_BUDGET} byte budget"


if __name__ == "__main__":
    main()
