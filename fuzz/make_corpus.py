"""Writes the seed corpora of the parser fuzz targets into fuzz/corpus/<target>/ (run from any
directory: /usr/bin/python3 fuzz/make_corpus.py). The seeds are the well-formed shapes of each
format and the hostile cases hattn is known to have to survive; each file's name says which."""
import json
import os
import struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
TINY = {"levels": 3, "heads": 4, "d_model": 64, "blocks": 1, "node_mask": "aligned", "vocab_size": 256,
        "sequence_length": 256}
STATE = {"step": 40, "model_step": 40, "model_seed": 1, "data_seed": 2, "data_stream": 0, "data_position": 640}


def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(header, data=b""):
    h = header if isinstance(header, bytes) else header.encode()
    return struct.pack("<Q", len(h)) + h + data


def tensor_file(entries, data, metadata=None):
    header = dict(entries)
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    return safetensors(json.dumps(header), data)


f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
put("safetensors", "valid_f32.st", tensor_file({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, f32,
                                              {"hattn.config": json.dumps(TINY), "hattn.train_state": json.dumps(STATE)}))
put("safetensors", "valid_mixed.st", tensor_file({
    "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
    "b": {"dtype": "BF16", "shape": [2], "data_offsets": [4, 8]},
    "c": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]},
    "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [16, 16]}}, bytes(range(16))))
put("safetensors", "nan_weights.st", tensor_file({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                                                 struct.pack("<4f", 1.0, float("nan"), float("inf"), -0.0)))
D = 100000
put("safetensors", "deep_nesting.st", safetensors('{"t":' + "[" * D + "]" * D + "}"))
put("safetensors", "duplicate_key.st", safetensors(
    '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
    bytes(4)))
put("safetensors", "duplicate_entry_key.st", safetensors(
    '{"a": {"dtype": "F32", "dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}', bytes(4)))
put("safetensors", "shape_overflow.st", tensor_file({"w": {"dtype": "F32", "shape": [2**62, 4, 0], "data_offsets": [0, 0]}}, b""))
put("safetensors", "offsets_overlap.st", tensor_file({
    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
put("safetensors", "entry_not_object.st", safetensors('{"w": "' + "x" * 5000 + '"}'))
put("safetensors", "header_length_huge.st", struct.pack("<Q", 2**63) + b"{}")
put("safetensors", "header_truncated.st", struct.pack("<Q", 100) + b'{"w": {"dtype"')
put("safetensors", "metadata_not_string.st", safetensors('{"__metadata__": {"k": 1}}'))

put("checkpoint_metadata", "config.json", json.dumps(TINY))
put("checkpoint_metadata", "train_state.json", json.dumps(STATE))
put("checkpoint_metadata", "levels_1e300.json", json.dumps(TINY).replace('"levels": 3', '"levels": 1e300'))
put("checkpoint_metadata", "negative_model_step.json", json.dumps({**STATE, "model_step": -1}))
put("checkpoint_metadata", "config_array.json", "[1, 2, 3]")
put("checkpoint_metadata", "deep_nesting.json", "[" * 5000 + "]" * 5000)
put("checkpoint_metadata", "duplicate_key.json", '{"levels": 3, "levels": 4}')
put("checkpoint_metadata", "node_mask_number.json", json.dumps({**TINY, "node_mask": 7}))

byte_chars = []
n = 0
for b in range(256):
    printable = (33 <= b <= 126) or (161 <= b <= 172) or (174 <= b <= 255)
    byte_chars.append(chr(b) if printable else chr(256 + n))
    n += 0 if printable else 1
bytes_only = {c: i for i, c in enumerate(byte_chars)}
put("gpt2_bpe", "bytes_only_no_eot", json.dumps(bytes_only) + "\0#version: 0.2\nh e\n")
put("gpt2_bpe", "eot_wrong_id", json.dumps({**bytes_only, "<|endoftext|>": 256}) + "\0#version: 0.2\n")
put("gpt2_bpe", "missing_byte", json.dumps({c: i for i, c in enumerate(byte_chars[1:])}) + "\0#version: 0.2\n")
put("gpt2_bpe", "duplicate_id", '{"a": 0, "b": 0}\0#version: 0.2\n')
put("gpt2_bpe", "deep_nesting", "[" * 5000 + "]" * 5000 + "\0")
put("gpt2_bpe", "bad_merge_line", json.dumps(bytes_only) + "\0#version: 0.2\nno-space-here\n" + "y" * 3000 + "\n")
