"""Minimal safetensors writer and reader for the Python tools and tests (no safetensors package).

File layout (the same as hattn::write_safetensors / hattn::read_safetensors):

    8 bytes    u64 little-endian n, the header length
    n bytes    UTF-8 JSON header, padded with spaces to a multiple of 8 (so the data is 8-aligned):
               {"__metadata__": {str: str},                       (optional)
                "<name>": {"dtype": "F32"|"I32"|"F64", "shape": [...], "data_offsets": [begin, end]},
                ...}
    data       the raw little-endian, row-major bytes of every tensor; offsets are relative to the
               first data byte, and the tensors tile the data exactly, in header order

Supported dtypes: F32 (torch.float32), I32 (torch.int32), F64 (torch.float64). The writer emits
compact JSON (no spaces) with the tensors in the order given, so its output is byte-for-byte
reproducible.
"""

import json
import math
import struct

import numpy as np
import torch

# safetensors dtype tag -> (torch dtype, little-endian numpy dtype)
DTYPES = {
    "F32": (torch.float32, np.dtype("<f4")),
    "I32": (torch.int32, np.dtype("<i4")),
    "F64": (torch.float64, np.dtype("<f8")),
}
_TAGS = {torch_dtype: tag for tag, (torch_dtype, _) in DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors`, a list of (name, torch.Tensor) in file order, each float32, int32 or
    float64, to `path`. `metadata` (str -> str) becomes the "__metadata__" entry, written first;
    with None the file has no "__metadata__" entry at all. Keys and values are converted with str().
    Raises KeyError for an unsupported dtype."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, t in tensors:
        tag = _TAGS[t.dtype]
        blob = t.detach().cpu().contiguous().numpy().astype(DTYPES[tag][1], copy=False).tobytes()
        header[name] = {"dtype": tag, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Parse the safetensors file at `path`. Returns (tensors, metadata, names): tensors is
    {name: torch.Tensor} (owning copies, F32/I32/F64), metadata the "__metadata__" dict or None
    when the file has none, names the tensor names in data order. Raises ValueError when the header
    runs past the end of the file or is not padded to a multiple of 8, when a tensor's byte count
    does not match its shape or runs past the end, or when the tensors do not tile the data
    section exactly."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} past the end of the file")
    if n % 8 != 0:
        raise ValueError(f"{path}: header length {n} not a multiple of 8")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    data = raw[8 + n:]
    names = sorted(header, key=lambda k: tuple(header[k]["data_offsets"]))
    tensors, end = {}, 0
    for name in names:
        info = header[name]
        np_dtype = DTYPES[info["dtype"]][1]
        b, e = info["data_offsets"]
        if b != end:
            raise ValueError(f"{path}: tensor {name} does not start where the previous one ends")
        if e - b != math.prod(info["shape"]) * np_dtype.itemsize:
            raise ValueError(f"{path}: tensor {name} has {e - b} bytes for {info['dtype']} shape {info['shape']}")
        if e > len(data):
            raise ValueError(f"{path}: tensor {name} ends at byte {e}, past the {len(data)}-byte data section")
        arr = np.frombuffer(data[b:e], dtype=np_dtype).reshape(info["shape"])
        tensors[name] = torch.from_numpy(arr.astype(np_dtype.newbyteorder("="), copy=True))  # native order
        end = e
    if end != len(data):
        raise ValueError(f"{path}: {len(data) - end} trailing bytes after the last tensor")
    return tensors, metadata, names
