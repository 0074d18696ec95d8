"""Checks that PyTorch loads a checkpoint hattn wrote and computes the same probabilities.

    python3 check_torch.py DIR

DIR holds model.safetensors (hattn::save_safetensors) and outputs.safetensors ("ids" I32 (B, T),
"probs" F32 (B, T, V), hattn's predict() on those ids), written by write_checkpoint. The checkpoint
is parsed by hand (no safetensors package), loaded into tools/hattn_reference.Decoder with
load_state_dict(strict=True), and its float64 probabilities on the same ids must match hattn's to a
relative 1e-5. Exits 77 (skipped) when torch cannot be imported, 1 on any mismatch.
"""

import json
import math
import os
import struct
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

DTYPES = {"F32": (torch.float32, 4), "I32": (torch.int32, 4)}


def read_safetensors(path):
    """({name: tensor}, metadata, names in header order) of a safetensors file, checking that the
    tensors tile the data section exactly."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), f"{path}: header length {n} past the end of the file"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = bytearray(raw[8 + n:])  # writable, as torch.frombuffer wants
    tensors, end = {}, 0
    for name in sorted(header, key=lambda k: header[k]["data_offsets"]):
        info = header[name]
        dtype, size = DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        assert b == end, f"{path}: tensor {name} does not start where the previous one ends"
        count = math.prod(info["shape"])
        assert e - b == count * size, f"{path}: tensor {name} has {e - b} bytes for shape {info['shape']}"
        t = torch.frombuffer(data, dtype=dtype, count=count, offset=b) if count else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).clone()
        end = e
    assert end == len(data), f"{path}: {len(data) - end} trailing bytes"
    return tensors, metadata, list(header)


def main():
    directory = sys.argv[1]
    weights, metadata, names = read_safetensors(os.path.join(directory, "model.safetensors"))
    assert metadata.get("format") == "hattn", metadata
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
