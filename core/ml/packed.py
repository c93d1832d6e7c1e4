"""The packed transformer: M independent copies of the solo model (core/ml/model.py) in one pass.

Every parameter carries a leading model axis ``M``: member ``i``'s ``blocks.0.attn.qkv.weight`` is
``packed.params["blocks.0.attn.qkv.weight"][i]``, of exactly the solo shape. Inputs carry the same
axis (tokens ``[M, B, T]``), and every operation is the solo one, batched over members with explicit
batched matmuls (``torch.matmul`` on ``[M, rows, k] x [M, k, n]``): no operation mixes two members,
so member ``i``'s outputs and gradients depend on member ``i``'s parameters and inputs alone.
Shape comments add ``M`` (members) to the solo model's ``B``, ``T``, ``H``.

The solo model stays the reference: a pack is built *from* solo models (``from_models``: each
member initialised exactly as its solo run, then stacked), and ``member_state_dict(i)`` gives a
member back in the solo layout, to load into a solo ``Transformer`` for evaluation, snapshots,
head scores and checkpoints. Members share every shape (``ModelConfig`` except ``dropout``);
what leaves shapes alone is per member: the dropout probability and the mask it draws (passed in
as ``dropout_scale``, drawn by the trainer from each member's own generator) and ``qk_scale``.

Storage: all parameters live in one buffer ``flat [M, P]`` (and their gradients in ``flat_grad
[M, P]``); each named parameter is a view of its columns. The optimizer (core/ml/packed_train.py)
then updates every parameter of every member in a handful of whole-buffer operations with
per-member hyper-parameters ``[M, 1]``, which is what makes a step cheap on a GPU. Because the
parameters are views of ``flat``, a pack is built on its device and never moved (``.to`` raises).

Explicit matmuls rather than ``torch.func.vmap`` over ``functional_call``: both compute the same
function; the explicit form measured faster on this CPU (docs/packed.md), takes per-member dropout
masks without vmap's randomness rules, and reads like the solo model.

Attention (``attention``): ``"fused"`` (the default) is the solo model's own
``scaled_dot_product_attention`` (one call over ``[M*B, H, T, d_head]`` on CUDA, one per member on
a CPU, where that is faster), which treats every row alone, so a member's attention is bit for bit
its solo one. ``"explicit"`` is ``baddbmm`` + ``softmax`` +
``bmm``: the same function, 1.5-5x faster on a CPU for small heads (docs/packed.md), but rounded
differently, and Adam's first steps magnify a rounding difference in a gradient entry near its
``eps`` to ~1e-4 in that parameter, so only ``"fused"`` matches solo parameters within 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from core.ml.model import ModelConfig, Transformer, rotary_tables, rotate

LN_EPS = 1e-5  # nn.LayerNorm's default, as in the solo model
ATTENTION = ("fused", "explicit")


def shape_key(cfg: ModelConfig) -> ModelConfig:
    """What must be equal for two models to share a pack: the config without what only changes
    values (``dropout``, and ``pos_init_std``, which scales the initial draws)."""
    return replace(cfg, dropout=0.0, pos_init_std=1.0)


class PackedTransformer(nn.Module):
    """tokens [M, B, T] (int) -> logits [M, B, T - first_output, d_vocab], member by member."""

    def __init__(self, cfg: ModelConfig, n_members: int, device: torch.device | str = "cpu", *,
                 attention: str = "fused") -> None:
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"attention: one of {', '.join(ATTENTION)} (got {attention!r})")
        self.attention = attention
        self.cfg = shape_key(cfg)
        self.n_members = M = n_members
        template = Transformer(self.cfg)  # only for names, shapes and which parameters train
        self.shapes = {name: tuple(p.shape) for name, p in template.named_parameters()}
        sizes = [math.prod(shape) for shape in self.shapes.values()]
        self.flat = torch.zeros(M, sum(sizes), device=device)  # [M, P]: every parameter of every member
        self.flat_grad = torch.zeros_like(self.flat)  # [M, P]
        self.columns: dict[str, slice] = {}  # parameter name -> its columns of flat
        self.params: dict[str, nn.Parameter] = {}  # solo name -> [M, *solo shape], a view of flat
        start = 0
        for (name, p), size in zip(template.named_parameters(), sizes):
            self.columns[name] = slice(start, start + size)
            shape = (M, *self.shapes[name])
            param = nn.Parameter(self.flat[:, start:start + size].view(shape), requires_grad=p.requires_grad)
            param.grad = self.flat_grad[:, start:start + size].view(shape)  # backward adds into it
            self.register_parameter(name.replace(".", "__"), param)
            self.params[name] = param
            start += size
        self.qk_scale = torch.ones(M, device=device)  # [M], per member (TrainSpec.qk_scale's ramp)
        self.vocab_offset = torch.arange(M, device=device).view(M, 1, 1) * cfg.d_vocab  # [M, 1, 1]
        if cfg.pos_encoding == "rope":
            cos, sin = rotary_tables(cfg.n_ctx, cfg.d_head)
            self.rope = (cos.to(device), sin.to(device))

    @classmethod
    def from_models(cls, models: list[Transformer], device: torch.device | str = "cpu", *,
                    attention: str = "fused") -> PackedTransformer:
        """Stack solo models (each initialised as its own run) into a pack on ``device``."""
        keys = {shape_key(m.cfg) for m in models}
        if len(keys) != 1:
            raise ValueError(f"a pack needs one model shape; got {len(keys)}: {sorted(map(str, keys))}")
        packed = cls(models[0].cfg, len(models), device, attention=attention)
        for i, model in enumerate(models):
            packed.load_member(i, model.state_dict())
        return packed

    def _apply(self, fn, recurse=True):
        raise NotImplementedError("a pack's parameters are views of one buffer: build it on its device")

    # ---------------------------------------------------------------------- members in the solo layout

    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s parameters as a solo ``Transformer`` state dict (copies, unfolded)."""
        return {name: p.detach()[i].clone() for name, p in self.params.items()}

    @torch.no_grad()
    def load_member(self, i: int, state: dict[str, torch.Tensor]) -> None:
        """Overwrite member ``i`` with a solo state dict (strict: the same keys and shapes)."""
        if state.keys() != self.params.keys():
            missing, extra = self.params.keys() - state.keys(), state.keys() - self.params.keys()
            raise ValueError(f"member state dict: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for name, p in self.params.items():
            p[i].copy_(state[name])

    # ------------------------------------------------------------------------------------ forward

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """LayerNorm over d_model with each member's own weight (and bias)."""
        y = F.layer_norm(x, (self.cfg.d_model,), eps=LN_EPS)  # [M, B, T, d]
        y = y * self.params[f"{name}.weight"][:, None, None, :]
        if self.cfg.bias:
            y = y + self.params[f"{name}.bias"][:, None, None, :]
        return y

    def _linear(self, x: torch.Tensor, name: str, rows: slice = slice(None)) -> torch.Tensor:
        """x [M, B, T, k] @ W[:, rows]^T (+ b) -> [M, B, T, n]: each member with its own W [n, k]."""
        M, B, T, k = x.shape
        W = self.params[f"{name}.weight"][:, rows]  # [M, n, k]
        y = torch.matmul(x.reshape(M, B * T, k), W.transpose(1, 2))  # [M, B*T, n]
        if self.cfg.bias:
            y = y + self.params[f"{name}.bias"][:, None, rows]
        return y.view(M, B, T, -1)

    def _attention(self, x: torch.Tensor, layer: int, first_query: int) -> torch.Tensor:
        """x [M, B, T, d] -> [M, B, T - first_query, d]: the solo Attention.forward, per member."""
        M, B, T, d = x.shape
        H, d_head = self.cfg.n_heads, self.cfg.d_head
        Tq = T - first_query
        name = f"blocks.{layer}.attn"
        q = self._linear(x[:, :, first_query:], f"{name}.qkv", slice(0, d))  # [M, B, Tq, d]
        k, v = self._linear(x, f"{name}.qkv", slice(d, 3 * d)).view(M, B, T, 2, H, d_head).unbind(dim=3)
        q = q * self.qk_scale.view(M, 1, 1, 1)  # [M, B, Tq, d]
        q = q.view(M, B, Tq, H, d_head).transpose(2, 3).reshape(M * B, H, Tq, d_head)
        k, v = (t.transpose(2, 3).reshape(M * B, H, T, d_head) for t in (k, v))  # [M*B, H, T, d_head]
        if self.cfg.pos_encoding == "rope":
            cos, sin = self.rope
            q = rotate(q, cos[first_query:T], sin[first_query:T])
            k = rotate(k, cos[:T], sin[:T])
        allowed = torch.ones(Tq, T, dtype=torch.bool, device=x.device).tril(diagonal=first_query)  # [Tq, T]
        if self.attention == "explicit":
            bias = torch.zeros(Tq, T, device=x.device).masked_fill_(~allowed, float("-inf"))  # [Tq, T]
            q, k, v = q.reshape(M * B * H, Tq, d_head), k.reshape(M * B * H, T, d_head), v.reshape(M * B * H, T, d_head)
            scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=1 / math.sqrt(d_head))  # [M*B*H, Tq, T]
            z = torch.bmm(scores.softmax(dim=-1), v).view(M * B, H, Tq, d_head)
        else:
            mask = {"is_causal": True} if Tq == T else {"attn_mask": allowed}
            if x.device.type == "cpu":  # the CPU kernel runs M calls of [B, ...] faster than one of [M*B, ...]
                z = torch.cat([F.scaled_dot_product_attention(*member, **mask)
                               for member in zip(q.split(B), k.split(B), v.split(B))])  # [M*B, H, Tq, d_head]
            else:  # one launch for the whole pack
                z = F.scaled_dot_product_attention(q, k, v, **mask)  # [M*B, H, Tq, d_head]
        z = z.view(M, B, H, Tq, d_head).transpose(2, 3).reshape(M, B, Tq, d)  # [M, B, Tq, H*d_head]
        return self._linear(z, f"{name}.out")  # [M, B, Tq, d]

    def _mlp(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        pre = self._linear(x, f"blocks.{layer}.mlp.fc_in")  # [M, B, T, d_mlp]
        return self._linear(F.gelu(pre), f"blocks.{layer}.mlp.fc_out")  # [M, B, T, d]

    def forward(self, tokens: torch.Tensor, first_output: int = 0,
                dropout_scale: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [M, B, T] -> logits [M, B, T - first_output, d_vocab] (see Transformer.forward).

        ``dropout_scale`` [M, B, T, d_model]: the embedding dropout's multiplier per member (0 or
        1 / (1 - p), or 1 where a member has none); None means no dropout (evaluation)."""
        M, B, T = tokens.shape
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence of {T} positions exceeds n_ctx={self.cfg.n_ctx}")
        table = self.params["embed.weight"].reshape(M * self.cfg.d_vocab, self.cfg.d_model)  # [M*V, d]
        h = F.embedding(tokens + self.vocab_offset, table)  # [M, B, T, d]: member i reads its own rows
        if self.cfg.pos_encoding in ("learned", "frozen"):
            h = h + self.params["pos_embed.weight"][:, None, :T]  # [M, 1, T, d] broadcast
        if dropout_scale is not None:
            h = h * dropout_scale
        for layer in range(self.cfg.n_layers):
            first = first_output if layer == self.cfg.n_layers - 1 else 0
            name = f"blocks.{layer}"
            if self.cfg.norm == "paper":
                h = self._norm(h, f"{name}.ln1")  # the stream itself is normalised, as in the solo model
                attn_out = self._attention(h, layer, first)
            else:
                attn_out = self._attention(self._norm(h, f"{name}.ln1"), layer, first)
            h = h[:, :, first:] + attn_out  # [M, B, T - first, d]
            h = h + self._mlp(self._norm(h, f"{name}.ln2"), layer)
        return self._linear(self._norm(h, "ln_final"), "unembed")  # [M, B, T - first_output, d_vocab]
