"""Checks that PyTorch loads a checkpoint hattn wrote and computes the same probabilities.

    python3 check_torch.py DIR

DIR holds model.safetensors (hattn::save_safetensors) and outputs.safetensors ("ids" I32 (B, T),
"probs" F32 (B, T, V), hattn's predict() on those ids), written by write_checkpoint. The checkpoint
is parsed by tools/safetensors_io.py (no safetensors package), loaded into
tools/hattn_reference.Decoder with load_state_dict(strict=True), and its float64 probabilities on
the same ids must match hattn's to a relative 1e-5. Exits 77 (skipped) when torch cannot be imported, 1 on any mismatch.
"""

import json
import os
import sys

SKIP = 77
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch
except ImportError as e:
    print(f"check_torch.py: skipped, cannot import torch ({e})")
    sys.exit(SKIP)

sys.path.insert(0, os.path.join(REPO, "tools"))
from hattn_reference import Decoder  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


def main():
    directory = sys.argv[1]
    weights, metadata, names = read_safetensors(os.path.join(directory, "model.safetensors"))
    assert metadata is not None and metadata.get("format") == "hattn", metadata
    config = json.loads(metadata["hattn.config"])
    print("hattn.config:", config)
    for name, t in weights.items():
        assert t.dtype == torch.float32, (name, t.dtype)

    model = Decoder(config["vocab_size"], config["sequence_length"], config["heads"], config["d_model"],
                    config["levels"], blocks=config["blocks"], node_mask=config["node_mask"], dropout=0.0)
    expected = model.state_dict()
    assert names == list(expected), "the file's tensors are not in state_dict order"
    model.load_state_dict(weights, strict=True)
    for name, t in model.state_dict().items():
        assert torch.equal(t, weights[name]), name

    outputs, _, _ = read_safetensors(os.path.join(directory, "outputs.safetensors"))
    ids, probs = outputs["ids"].long(), outputs["probs"]
    with torch.no_grad():
        ref = model.double()(ids, training=False)
    assert ref.shape == probs.shape, (ref.shape, probs.shape)
    rel = ((probs.double() - ref).abs() / ref.abs()).max().item()
    print(f"{len(weights)} tensors loaded with strict=True; probs {tuple(probs.shape)}, "
          f"max relative difference {rel:.3g}")
    if not rel < 1e-5:
        print("check_torch.py: FAILED, max relative difference must be < 1e-5")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
