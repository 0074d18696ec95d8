"""PyTorch reference of the hattn model, written from SPEC.md.

An independent implementation used to generate parity fixtures (tools/make_fixtures.py) and to
benchmark against. Parameter names follow SPEC.md, so `state_dict()` interoperates with hattn's
safetensors checkpoints. Run with Debian's python3-torch: /usr/bin/python3.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoid_table(rows, d, dtype=torch.float32):
    """P[k, 2i] = sin(k / 10000^(2i/d)), P[k, 2i+1] = cos(...), computed in float64."""
    k = torch.arange(rows, dtype=torch.float64)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float64)[None, :]
    angle = k / torch.pow(torch.tensor(10000.0, dtype=torch.float64), i / d)
    table = torch.empty(rows, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.to(dtype)


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(dh)) V per head, masked entries -inf, heads concatenated, then W_o."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)

    def forward(self, q_in, kv_in, allowed):
        # q_in (G, Tq, d), kv_in (G, Tk, d), allowed (Tq, Tk) bool or None (everything visible)
        g, tq, d = q_in.shape
        tk = kv_in.shape[1]
        h, dh = self.heads, self.head_dim
        q = self.W_q(q_in).view(g, tq, h, dh).transpose(1, 2)  # (G, h, Tq, dh)
        k = self.W_k(kv_in).view(g, tk, h, dh).transpose(1, 2)  # (G, h, Tk, dh)
        v = self.W_v(kv_in).view(g, tk, h, dh).transpose(1, 2)  # (G, h, Tk, dh)
        scores = self.mask(q @ k.transpose(-1, -2) / math.sqrt(dh), allowed)  # (G, h, Tq, Tk)
        o = torch.softmax(scores, dim=-1) @ v  # (G, h, Tq, dh)
        return self.W_o(o.transpose(1, 2).reshape(g, tq, d))

    def mask(self, scores, allowed):
        """`scores` (G, h, Tq, Tk) with the entries where `allowed` (Tq, Tk) is False set to -inf;
        unchanged when `allowed` is None."""
        return scores if allowed is None else scores.masked_fill(~allowed, float("-inf"))


class LeafAttention(nn.Module):
    def __init__(self, d_model, heads, dropout):
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, heads)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, chunks):
        c = chunks.shape[1]
        causal = torch.ones(c, c, dtype=torch.bool, device=chunks.device).tril()
        return self.dropout(self.norm(self.self_attention(chunks, chunks, causal)))


class NodeLayer(nn.Module):
    def __init__(self, d_model, heads, dropout):
        super().__init__()
        self.cross_attention = MultiHeadAttention(d_model, heads)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, right, left, allowed):
        return self.dropout(self.norm(self.cross_attention(right, left, allowed)))


class HierarchicalAttention(nn.Module):
    """Leaf self-attention in 2^L chunks, then L levels where each right sibling is replaced by its
    cross-attention over the left sibling."""

    def __init__(self, d_model, heads, levels, node_mask="aligned", dropout=0.1):
        super().__init__()
        self.levels = levels
        self.node_mask = node_mask
        self.leaf_attention = LeafAttention(d_model, heads, dropout)
        self.node_layers = nn.ModuleList(NodeLayer(d_model, heads, dropout) for _ in range(levels))

    def forward(self, x):
        b, tp, d = x.shape  # (B, Tp, d), Tp a multiple of 2^L
        n = 2 ** self.levels
        c = tp // n
        y = self.leaf_attention(x.reshape(b * n, c, d)).reshape(b, tp, d)
        for level, layer in enumerate(self.node_layers):
            s = c * 2 ** level
            pairs = y.reshape(b * tp // (2 * s), 2, s, d)
            left, right = pairs[:, 0], pairs[:, 1]
            allowed = (torch.ones(s, s, dtype=torch.bool, device=y.device).tril()
                       if self.node_mask == "aligned" else None)
            y = torch.stack([left, layer(right, left, allowed)], dim=1).reshape(b, tp, d)
        return y


class DecoderBlock(nn.Module):
    def __init__(self, d_model, heads, levels, node_mask="aligned", dropout=0.1):
        super().__init__()
        self.chunks = 2 ** levels
        self.hier_attn1 = HierarchicalAttention(d_model, heads, levels, node_mask, dropout)
        self.hier_attn2 = HierarchicalAttention(d_model, heads, levels, node_mask, dropout)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.ReLU(), nn.Linear(4 * d_model, d_model))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def padded(self, x):
        t = x.shape[1]
        tp = -(-t // self.chunks) * self.chunks
        return F.pad(x, (0, 0, 0, tp - t))

    def forward(self, x):
        t = x.shape[1]
        a1 = self.norm1(x + self.hier_attn1(self.padded(x))[:, :t])
        a2 = self.norm2(a1 + self.hier_attn2(self.padded(a1))[:, :t])
        return self.norm3(a2 + self.feed_forward(a2))


class PositionalEncoding(nn.Module):
    def __init__(self, vocab_size, sequence_length, d_model, dropout=0.1):
        super().__init__()
        self.word_embedding_layer = nn.Embedding(vocab_size, d_model)
        self.position_embedding_layer = nn.Embedding(sequence_length, d_model)
        self.position_embedding_layer.weight.data.copy_(sinusoid_table(sequence_length, d_model))
        self.position_embedding_layer.weight.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids):
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(self.word_embedding_layer(ids) + self.position_embedding_layer(positions))


class Decoder(nn.Module):
    """The hattn model. `blocks == 1` uses the seed's name `decoder_block`; more blocks are
    `decoder_blocks.{i}`."""

    def __init__(self, vocab_size, sequence_length, heads, d_model, levels, blocks=1,
                 node_mask="aligned", dropout=0.1):
        super().__init__()
        if levels > int(math.floor(math.log2(sequence_length))):
            raise ValueError("levels too deep for sequence_length")
        self.sequence_length = sequence_length
        self.pos_encoding = PositionalEncoding(vocab_size, sequence_length, d_model, dropout)
        make = lambda: DecoderBlock(d_model, heads, levels, node_mask, dropout)
        if blocks == 1:
            self.decoder_block = make()
        else:
            self.decoder_blocks = nn.ModuleList(make() for _ in range(blocks))
        self.linear = nn.Linear(d_model, vocab_size)

    def blocks(self):
        return [self.decoder_block] if hasattr(self, "decoder_block") else list(self.decoder_blocks)

    def forward(self, ids, training=True):
        """training=True: logits, dropouts active while the module is in train mode.
        training=False: inference, softmax(logits) with every dropout off whatever the module mode."""
        if not training and self.training:
            self.eval()
            try:
                return self.forward(ids, training=False)
            finally:
                self.train()
        x = self.pos_encoding(ids)
        for block in self.blocks():
            x = block(x)
        logits = self.linear(x)
        return logits if training else torch.softmax(logits, dim=-1)
