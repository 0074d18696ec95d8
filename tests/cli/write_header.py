"""Writes a safetensors file holding only a header whose hattn.config metadata is the tiny preset's
with fields replaced by raw JSON text: write_header.py OUT [FIELD=JSON ...], e.g. levels=1e300."""
import json
import struct
import sys

fields = {"levels": "3", "heads": "4", "d_model": "64", "blocks": "1", "node_mask": '"aligned"',
          "vocab_size": "256", "sequence_length": "256"}
for arg in sys.argv[2:]:
    key, _, value = arg.partition("=")
    fields[key] = value
config = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
header = json.dumps({"__metadata__": {"hattn.config": config}}).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header)
