"""PyTorch reference of the hattn model, written from SPEC.md.

An independent implementation used to generate parity fixtures (tools/make_fixtures.py) and to
benchmark against. Parameter names follow SPEC.md, so `state_dict()` interoperates with hattn's
safetensors checkpoints. Run with Debian's python3-torch: /usr/bin/python3.

The variants of SPEC.md "Variants" are constructor arguments of `Decoder`, the seed's model their
defaults:
  node_combine  "replace" | "residual"   a tree level's right half becomes
                                          Dropout(LN_l(MHA_l(right, left))) | Dropout(LN_l(right + ...))
  summaries     0 | k >= 1               at a level whose left sibling has S_l > k rows, keys and values
                                          come from k mean-pooled summary rows of it (pool, then project)
  mixer         "hierarchical" | "dense" dense: each HA is Dropout(LN(MHA(x, x, causal))) over the
                                          unpadded sequence (names attn{1,2}.*, no node layers)
  seed_compat   False | True             the seed notebook's non-causal mask: scores + (-1e9) * tril(ones),
                                          with the float32 add emulated exactly (see MultiHeadAttention.mask)
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NODE_MASKS = ("aligned", "full")
NODE_COMBINES = ("replace", "residual")
MIXERS = ("hierarchical", "dense")
NOTEBOOK_MASK_VALUE = -1e9  # exactly representable in float32


def summary_bounds(rows, k):
    """[s_0, ..., s_k]: summary b of a left sibling of `rows` rows pools rows [s_b, s_{b+1}),
    s_b = floor(b * rows / k) (so s_0 = 0 and s_k = rows)."""
    return [b * rows // k for b in range(k + 1)]


def pool_summaries(left, k):
    """(G, S, d) -> (G, k, d): summary b is the mean of left rows [s_b, s_{b+1})."""
    bounds = summary_bounds(left.shape[1], k)
    return torch.stack([left[:, bounds[b]:bounds[b + 1]].mean(dim=1) for b in range(k)], dim=1)


def summary_allowed(rows, k, node_mask, device=None):
    """(rows, k) bool: right row i sees summary b when s_b <= i (aligned); None (all) under full."""
    if node_mask == "full":
        return None
    starts = torch.tensor(summary_bounds(rows, k)[:k], device=device)
    return torch.arange(rows, device=device)[:, None] >= starts[None, :]


def notebook_masked(scores):
    """The seed notebook's `scores + (-1e9)` on every entry, in float32 whatever the dtype of
    `scores`: float64(float32(float32(s) + float32(-1e9))). In float32 that is the notebook's own
    add; in float64 it reproduces the float32 value exactly (|s| < 32 rounds to exactly -1e9, so a
    fully masked row is uniform). The derivative with respect to `s` is 1, as torch's autograd
    gives for the notebook's float32 add (the value ignores the rounding's step function)."""
    rounded = (scores.detach().to(torch.float32)
               + torch.tensor(NOTEBOOK_MASK_VALUE, dtype=torch.float32)).to(scores.dtype)
    return rounded + (scores - scores.detach())


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
    """softmax(Q K^T / sqrt(dh)) V per head, masked entries -inf, heads concatenated, then W_o.
    With seed_compat the notebook's mask instead (see `mask`)."""

    def __init__(self, d_model, heads, seed_compat=False):
        super().__init__()
        self.seed_compat = seed_compat
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
        unchanged when `allowed` is None.

        seed_compat: `allowed` is ignored; the notebook adds -1e9 * tril(ones(Tq, Tk)) (square: the
        leaf chunk, or a level's S_l x S_l right-by-left block), so the past and the diagonal get
        `notebook_masked(s)` and the future stays `s`: non-causal, see SPEC.md."""
        if self.seed_compat:
            tq, tk = scores.shape[-2:]
            assert tq == tk, "the notebook mask is the square tril of the chunk / sibling block"
            tril = torch.ones(tq, tk, dtype=torch.bool, device=scores.device).tril()
            return torch.where(tril, notebook_masked(scores), scores)
        return scores if allowed is None else scores.masked_fill(~allowed, float("-inf"))


class LeafAttention(nn.Module):
    def __init__(self, d_model, heads, dropout, seed_compat=False):
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, heads, seed_compat)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, chunks):
        c = chunks.shape[1]
        causal = torch.ones(c, c, dtype=torch.bool, device=chunks.device).tril()
        return self.dropout(self.norm(self.self_attention(chunks, chunks, causal)))


class DenseAttention(nn.Module):
    """Mixer "dense": Dropout(LN(MHA(x, x, causal))) over the whole (unpadded) sequence."""

    def __init__(self, d_model, heads, dropout):
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, heads)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        return self.dropout(self.norm(self.self_attention(x, x, causal)))


class NodeLayer(nn.Module):
    """One tree level: the right sibling's cross-attention over `kv` (the left sibling or its
    summaries), replacing the right sibling or added to it (node_combine), then LN, dropout."""

    def __init__(self, d_model, heads, dropout, node_combine="replace", seed_compat=False):
        super().__init__()
        self.node_combine = node_combine
        self.cross_attention = MultiHeadAttention(d_model, heads, seed_compat)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, right, kv, allowed):
        mixed = self.cross_attention(right, kv, allowed)
        if self.node_combine == "residual":
            mixed = right + mixed
        return self.dropout(self.norm(mixed))


class HierarchicalAttention(nn.Module):
    """Leaf self-attention in 2^L chunks, then L levels where each right sibling is replaced by its
    cross-attention over the left sibling (or, node_combine "residual", has it added), keys and
    values from the left sibling's rows or (summaries k) from k mean-pooled summaries of them."""

    def __init__(self, d_model, heads, levels, node_mask="aligned", dropout=0.1,
                 node_combine="replace", summaries=0, seed_compat=False):
        super().__init__()
        self.levels = levels
        self.node_mask = node_mask
        self.summaries = summaries
        self.leaf_attention = LeafAttention(d_model, heads, dropout, seed_compat)
        self.node_layers = nn.ModuleList(NodeLayer(d_model, heads, dropout, node_combine, seed_compat)
                                         for _ in range(levels))

    def pools(self, rows):
        """Whether a level whose left sibling has `rows` rows reads summaries (S_l > k)."""
        return self.summaries > 0 and rows > self.summaries

    def forward(self, x):
        b, tp, d = x.shape  # (B, Tp, d), Tp a multiple of 2^L
        n = 2 ** self.levels
        c = tp // n
        y = self.leaf_attention(x.reshape(b * n, c, d)).reshape(b, tp, d)
        for level, layer in enumerate(self.node_layers):
            s = c * 2 ** level
            pairs = y.reshape(b * tp // (2 * s), 2, s, d)
            left, right = pairs[:, 0], pairs[:, 1]
            if self.pools(s):
                kv = pool_summaries(left, self.summaries)
                allowed = summary_allowed(s, self.summaries, self.node_mask, y.device)
            else:
                kv = left
                allowed = (torch.ones(s, s, dtype=torch.bool, device=y.device).tril()
                           if self.node_mask == "aligned" else None)
            y = torch.stack([left, layer(right, kv, allowed)], dim=1).reshape(b, tp, d)
        return y


class DecoderBlock(nn.Module):
    def __init__(self, d_model, heads, levels, node_mask="aligned", dropout=0.1,
                 node_combine="replace", summaries=0, mixer="hierarchical", seed_compat=False):
        super().__init__()
        self.mixer = mixer
        self.chunks = 2 ** levels
        if mixer == "dense":
            self.attn1 = DenseAttention(d_model, heads, dropout)
            self.attn2 = DenseAttention(d_model, heads, dropout)
        else:
            make = lambda: HierarchicalAttention(d_model, heads, levels, node_mask, dropout,
                                                 node_combine, summaries, seed_compat)
            self.hier_attn1 = make()
            self.hier_attn2 = make()
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
        if self.mixer == "dense":
            a1 = self.norm1(x + self.attn1(x))
            a2 = self.norm2(a1 + self.attn2(a1))
            return self.norm3(a2 + self.feed_forward(a2))
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
    `decoder_blocks.{i}`. The variant arguments are described in the module docstring; seed_compat
    is NOT causal (SPEC.md, "The seed notebook's masking defect")."""

    def __init__(self, vocab_size, sequence_length, heads, d_model, levels, blocks=1,
                 node_mask="aligned", dropout=0.1, node_combine="replace", summaries=0,
                 mixer="hierarchical", seed_compat=False):
        super().__init__()
        if d_model % heads != 0 or d_model % 2 != 0 or levels < 1 or heads < 1 or blocks < 1:
            raise ValueError("need d_model % heads == 0, d_model even, levels, heads, blocks >= 1")
        if levels > int(math.floor(math.log2(sequence_length))):
            raise ValueError("levels too deep for sequence_length")
        if node_mask not in NODE_MASKS or node_combine not in NODE_COMBINES or mixer not in MIXERS:
            raise ValueError("unknown node_mask, node_combine or mixer")
        if not (isinstance(summaries, int) and summaries >= 0):
            raise ValueError("summaries is 0 or a positive int")
        tree_defaults = node_mask == "aligned" and node_combine == "replace" and summaries == 0
        if mixer == "dense" and not tree_defaults:
            raise ValueError("mixer dense needs the default node_mask, node_combine and summaries")
        if seed_compat and not (tree_defaults and mixer == "hierarchical"):
            raise ValueError("seed_compat needs every other variant field at its default")
        self.sequence_length = sequence_length
        self.seed_compat = seed_compat
        self.pos_encoding = PositionalEncoding(vocab_size, sequence_length, d_model, dropout)
        make = lambda: DecoderBlock(d_model, heads, levels, node_mask, dropout, node_combine,
                                    summaries, mixer, seed_compat)
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
