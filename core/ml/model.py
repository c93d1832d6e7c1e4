"""The transformer: a small decoder-only model with TransformerLens names.

One file holds the whole model, top-down: config, attention, MLP, block, transformer.
Dimension names are TransformerLens's: ``d_model``, ``n_heads``, ``d_head``, ``n_layers``,
``n_ctx``, ``d_vocab``, ``d_mlp``. Shape comments use ``B`` batch, ``T`` positions, ``H`` heads.

Two residual layouts (``norm``):
- ``pre``: the standard pre-LN block, ``h <- h + attn(ln1(h)); h <- h + mlp(ln2(h))``.
- ``paper``: the authors' quirk, where the stream itself is replaced by its normalised value before
  attention: ``h <- ln1(h); h <- h + attn(h); h <- h + mlp(ln2(h))``.

Attention has two paths that compute the same function: a fused one
(``scaled_dot_product_attention``, used for training) and an explicit one that materialises the
pattern so that ``hook_attn_scores`` and ``hook_pattern`` can be read or replaced. The explicit path
runs whenever a hook is attached to either site, or when ``model.explicit`` is set.

``qk_scale`` multiplies every query (so every attention logit) by a number the trainer may raise
during training (``TrainSpec.qk_scale``: an optional sharpening ramp, off in every preset). It is a
reparametrisation, not a new kind of model: :meth:`Transformer.folded_state_dict` multiplies it into
``W_Q``, and every saved set of weights is folded, so a checkpoint always loads into a plain model
with ``qk_scale = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from core.ml.hooks import HookPoint, name_hook_points
from core.specs.run import ModelSpec, ProblemSpec

_SPEC = ModelSpec()  # the spec's defaults, resolved: the paper's model
POS_ENCODINGS = get_args(ModelSpec.model_fields["pos_encoding"].annotation)  # ("learned", "frozen", "rope", "none")
NORMS = get_args(ModelSpec.model_fields["norm"].annotation)  # ("paper", "pre")


@dataclass(frozen=True)
class ModelConfig:
    """The network's sizes as the model reads them: a ModelSpec (d_mlp resolved) and the context width.

    The defaults are the spec's own (core/specs/run.py), on the paper's problem; ``from_spec`` is
    the usual way in.
    """

    n_layers: int = _SPEC.n_layers
    n_heads: int = _SPEC.n_heads
    d_model: int = _SPEC.d_model
    d_mlp: int = _SPEC.d_mlp
    n_ctx: int = ProblemSpec(problem="polynomial").n_ctx
    d_vocab: int = _SPEC.d_vocab
    pos_encoding: str = _SPEC.pos_encoding
    norm: str = _SPEC.norm
    bias: bool = _SPEC.bias
    dropout: float = _SPEC.dropout
    pos_init_std: float = _SPEC.pos_init_std

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_spec(cls, spec) -> ModelConfig:
        """Build from a RunSpec (model fields plus the context width the problem needs)."""
        return cls(**spec.model.model_dump(), n_ctx=spec.n_ctx, d_vocab=spec.model.d_vocab)


def rotary_tables(n_ctx: int, d_head: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [n_ctx, d_head] for rotary position embeddings (half-split layout)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d_head, 2).float() / d_head))  # [d_head/2]
    angles = torch.outer(torch.arange(n_ctx).float(), inv_freq)  # [n_ctx, d_head/2]
    angles = torch.cat([angles, angles], dim=-1)  # [n_ctx, d_head]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary embeddings to x [B, H, T, d_head] with tables [T, d_head]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def causal_mask(n_queries: int, n_keys: int, device) -> torch.Tensor:
    """[n_queries, n_keys] bool, True where the key may be attended: the queries are the last
    ``n_queries`` positions of the ``n_keys``, each sees itself and everything before it."""
    offset = n_keys - n_queries
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(diagonal=offset)


class LayerCache:
    """One layer's keys and values [B, H, T, d_head] of the positions already run (see KVCache)."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions' keys and values; return every position's."""
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)  # [B, H, T_past + T, d_head]
        self.k, self.v = k, v
        return k, v


class KVCache:
    """Keys and values of every layer for the positions a decoder has already run.

    ``model(new_tokens, cache=cache)`` runs only the new positions, placed after the cached ones:
    their queries see the cached keys, and their own keys and values are appended. Greedy decoding
    then costs one position per generated token instead of a pass over the whole prefix, and gives
    the same logits (a test checks it)."""

    def __init__(self, n_layers: int) -> None:
        self.layers = [LayerCache() for _ in range(n_layers)]

    @property
    def length(self) -> int:
        return self.layers[0].length


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)  # W_Q | W_K | W_V
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)  # W_O
        self.hook_q = HookPoint()  # [B, T, H, d_head]
        self.hook_k = HookPoint()  # [B, T, H, d_head]
        self.hook_v = HookPoint()  # [B, T, H, d_head]
        self.hook_attn_scores = HookPoint()  # [B, H, Tq, Tk], masked with -inf
        self.hook_pattern = HookPoint()  # [B, H, Tq, Tk], rows sum to 1
        self.hook_z = HookPoint()  # [B, T, H, d_head]
        if cfg.pos_encoding == "rope":
            cos, sin = rotary_tables(cfg.n_ctx, cfg.d_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.explicit = False
        self.qk_scale = 1.0  # multiplies the queries; folded into W_Q whenever weights are saved

    def forward(self, x: torch.Tensor, first_query: int = 0, past: LayerCache | None = None) -> torch.Tensor:
        """x [B, T, d_model] -> [B, T - first_query, d_model]: the outputs of queries first_query..T-1.

        Keys and values always cover every position; ``first_query > 0`` skips the query-side work of
        positions whose output nobody reads (the trainer's last block, before the first scored target).
        ``past``: x holds the positions after those cached there, which its queries also see.
        """
        B, T, _ = x.shape
        start = 0 if past is None else past.length  # x's first position
        H, d_head, d = self.cfg.n_heads, self.cfg.d_head, self.cfg.d_model
        Tq = T - first_query
        if first_query == 0:
            q, k, v = self.qkv(x).view(B, T, 3, H, d_head).unbind(dim=2)  # 3 x [B, T, H, d_head]
        else:
            W, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, first_query:], W[:d], None if b is None else b[:d]).view(B, Tq, H, d_head)
            k, v = F.linear(x, W[d:], None if b is None else b[d:]).view(B, T, 2, H, d_head).unbind(dim=2)
        if self.qk_scale != 1.0:
            q = q * self.qk_scale  # [B, Tq, H, d_head], what a folded W_Q would give
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, Tq | T, d_head]
        if self.cfg.pos_encoding == "rope":
            q = rotate(q, self.rope_cos[start + first_query:start + T], self.rope_sin[start + first_query:start + T])
            k = rotate(k, self.rope_cos[start:start + T], self.rope_sin[start:start + T])
        if past is not None:
            k, v = past.extend(k, v)  # [B, H, start + T, d_head]
        if self.explicit or self.hook_attn_scores.fns or self.hook_pattern.fns:
            z = self._explicit(q, k, v)  # [B, H, Tq, d_head]
        elif Tq == k.shape[-2]:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, d_head]
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(Tq, k.shape[-2], x.device))
        z = self.hook_z(z.transpose(1, 2))  # [B, Tq, H, d_head]
        return self.out(z.reshape(B, Tq, H * d_head))  # [B, Tq, d_model]

    def _explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        Tq, T = q.shape[-2], k.shape[-2]
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.cfg.d_head)  # [B, H, Tq, T]
        scores = scores.masked_fill(~causal_mask(Tq, T, q.device), float("-inf"))
        pattern = self.hook_pattern(self.hook_attn_scores(scores).softmax(dim=-1))  # [B, H, Tq, T]
        return pattern @ v  # [B, H, Tq, d_head]


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc_in = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.bias)  # W_in
        self.fc_out = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)  # W_out
        self.hook_pre = HookPoint()  # [B, T, d_mlp]
        self.hook_post = HookPoint()  # [B, T, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(self.fc_in(x))  # [B, T, d_mlp]
        return self.fc_out(self.hook_post(F.gelu(pre)))  # [B, T, d_model]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.paper_norm = cfg.norm == "paper"
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()  # [B, T, d_model]
        self.hook_attn_out = HookPoint()  # [B, T, d_model]
        self.hook_resid_mid = HookPoint()  # [B, T, d_model]
        self.hook_mlp_out = HookPoint()  # [B, T, d_model]
        self.hook_resid_post = HookPoint()  # [B, T, d_model]

    def forward(self, h: torch.Tensor, first_query: int = 0, past: LayerCache | None = None) -> torch.Tensor:
        """h [B, T, d_model] -> [B, T - first_query, d_model] (see Attention.forward)."""
        h = self.hook_resid_pre(h)
        if self.paper_norm:
            h = self.ln1(h)  # the stream itself is normalised (the paper's quirk, docs/paper.md)
            attn_out = self.attn(h, first_query, past)
        else:
            attn_out = self.attn(self.ln1(h), first_query, past)
        h = self.hook_resid_mid(h[:, first_query:] + self.hook_attn_out(attn_out))
        return self.hook_resid_post(h + self.hook_mlp_out(self.mlp(self.ln2(h))))


class EmbeddingDropout(nn.Module):
    """``nn.Dropout``'s function (zero each entry with probability p in training, scale the rest by
    1 / (1 - p)) with its mask drawn by ``rand`` instead of ``bernoulli_``: on a CPU the step's
    dropout forward and backward take 40% less time (5.8 against 9.4 ms for the paper's batch)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return h
        scale = (torch.rand_like(h) >= self.p).to(h.dtype).mul_(1.0 / (1.0 - self.p))  # [B, T, d_model]
        return h * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Transformer(nn.Module):
    """tokens [B, T] (int) -> logits [B, T, d_vocab]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.pos_encoding not in POS_ENCODINGS or cfg.norm not in NORMS:
            raise ValueError(f"pos_encoding in {POS_ENCODINGS}, norm in {NORMS}")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)  # W_E
        if cfg.pos_encoding in ("learned", "frozen"):
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)  # W_pos, N(0, 1) entries
            if cfg.pos_init_std != 1.0:
                with torch.no_grad():  # the same draws, scaled: nothing else's initialisation moves
                    self.pos_embed.weight.mul_(cfg.pos_init_std)
            self.pos_embed.weight.requires_grad_(cfg.pos_encoding == "learned")
        self.hook_embed = HookPoint()  # [B, T, d_model]
        self.hook_pos_embed = HookPoint()  # [B, T, d_model]
        self.dropout = EmbeddingDropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=cfg.bias)  # W_U
        self.hook_points = name_hook_points(self)

    @property
    def explicit(self) -> bool:
        return all(block.attn.explicit for block in self.blocks)

    @explicit.setter
    def explicit(self, value: bool) -> None:
        for block in self.blocks:
            block.attn.explicit = value

    @property
    def qk_scale(self) -> float:
        return self.blocks[0].attn.qk_scale

    @qk_scale.setter
    def qk_scale(self, value: float) -> None:
        for block in self.blocks:
            block.attn.qk_scale = float(value)

    def folded_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict with ``qk_scale`` multiplied into W_Q (and its bias): the same function as a
        plain model with ``qk_scale = 1``. Tensors are copies where folded, the live ones elsewhere."""
        state = self.state_dict()
        d = self.cfg.d_model
        for layer, block in enumerate(self.blocks):
            scale = block.attn.qk_scale
            if scale == 1.0:
                continue
            for name in ("weight", "bias"):
                key = f"blocks.{layer}.attn.qkv.{name}"
                if key in state:
                    folded = state[key].clone()  # [3d, d] or [3d]; rows :d are W_Q
                    folded[:d] *= scale
                    state[key] = folded
        return state

    def forward(self, tokens: torch.Tensor, first_output: int = 0, cache: KVCache | None = None) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T - first_output, d_vocab] for positions first_output..T-1.

        Training asks only for the positions it scores; the last block then skips the query-side
        work (attention queries, W_O, MLP, unembedding) of every earlier position. The logits it
        returns are exactly those of the full pass at the same positions. With a ``cache``, tokens
        are the positions after the cached ones (decoding; positions count from the cache's start).
        """
        start = 0 if cache is None else cache.length
        T = tokens.shape[1]
        if start + T > self.cfg.n_ctx:
            raise ValueError(f"sequence of {start + T} positions exceeds n_ctx={self.cfg.n_ctx}")
        h = self.hook_embed(self.embed(tokens))  # [B, T, d_model]
        if self.cfg.pos_encoding in ("learned", "frozen"):
            h = h + self.hook_pos_embed(self.pos_embed.weight[start:start + T])  # [T, d_model] broadcast
        h = self.dropout(h)
        for layer, block in enumerate(self.blocks):
            last = layer == len(self.blocks) - 1
            past = None if cache is None else cache.layers[layer]
            h = block(h, first_output if last else 0, past)  # [B, T | T - first_output, d_model]
        return self.unembed(self.ln_final(h))  # [B, T - first_output, d_vocab]

    def new_cache(self) -> KVCache:
        """An empty cache for decoding (see ``forward``)."""
        return KVCache(self.cfg.n_layers)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
