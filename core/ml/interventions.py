"""Interventions: change what chosen heads do, then measure the model (causal, not correlational).

An intervention is a *hooks_for* function, ``fn(length, inputs) -> [(hook_name, hook_fn), ...]``,
called before each evaluation chunk (``core.ml.evaluate.teacher_forced(..., hooks_for=fn)``) with
the chunk's input length and its inputs [n, T] (every row of a chunk has the same length, so the
theory's positions are known). Its hooks are attached for that one forward pass and removed after.
Heads are ``(layer, head)`` pairs, counted from 0 as in the hook names (``L1H0`` = ``(1, 0)``).

Three families, each at one hook site:

- **head ablation** at ``blocks.{l}.attn.hook_z`` [batch, pos, head, d_head]: the head's output is
  replaced by zero, by its mean over the probe sequences of the same length (per position), or by
  its value on *other* sequences of the same chunk (resample: a seeded derangement of the rows);
- **edge zeroing** at ``hook_pattern`` [batch, head, query, key]: the theory's edge of a role is
  removed, every chain-of-thought query -> EoI (``eoi_locator``) or query e+t-1 -> x_t
  (``iteration``), either raw (the row then sums to less than 1) or renormalised (the row's other
  weights rescaled to sum to 1; a row that had all its weight on the edge stays zero);
- **pattern patching** at ``hook_pattern``: the rows the theory speaks about are replaced by a
  one-hot on the expected key (``ideal``), or on the expected key shifted by ``shift`` (EoI + shift
  for the EoI locator, x_{t + shift} for the iteration head, clipped to the causal range); other
  rows keep the head's own weights. Or the head's whole pattern is replaced by another model's (a
  second run, or another step) on the same input.

``combine`` applies several at once (e.g. both circuit heads patched to their ideal maps).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from core.ml.evaluate import HooksFor
from core.ml.hooks import hooks, run_with_cache
from core.names import ABLATIONS, hook_name
from core.problems import expected_keys

Head = tuple[int, int]  # (layer, head)


def z_name(layer: int) -> str:
    return hook_name(layer, "z")


def pattern_name(layer: int) -> str:
    return hook_name(layer, "pattern")


def by_layer(heads: Sequence[Head]) -> dict[int, list[int]]:
    """{layer: [head, ...]} in the order given, duplicates dropped."""
    out: dict[int, list[int]] = defaultdict(list)
    for layer, head in heads:
        if head not in out[layer]:
            out[layer].append(head)
    return dict(out)


def check_heads(model, heads: Sequence[Head]) -> None:
    """Raise ValueError naming the first (layer, head) the model does not have."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    for layer, head in heads:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"no head L{layer}H{head}: the model has {n_layers} layers of {n_heads} heads")


def combine(*fns: HooksFor) -> HooksFor:
    """One hooks_for that attaches every given intervention's hooks, in order."""
    def hooks_for(length: int, inputs: torch.Tensor):
        return [pair for fn in fns for pair in fn(length, inputs)]
    return hooks_for


# ---------------------------------------------------------------- head ablation (hook_z)


@torch.no_grad()
def mean_z(model, heads: Sequence[Head], tokens: np.ndarray, lengths: np.ndarray) -> dict[int, dict[int, torch.Tensor]]:
    """{layer: {length: mean hook_z over the rows of that length [W-1, H, d_head]}}, plus key 0: the mean
    over every row (used for a length the probe set lacks). tokens [N, W] (the probe set)."""
    device = next(model.parameters()).device
    layers = sorted(by_layer(heads))
    inputs = torch.from_numpy(np.asarray(tokens)[:, :-1]).to(device=device, dtype=torch.long)  # [N, W-1]
    model.eval()
    _, cache = run_with_cache(model, inputs, [z_name(layer) for layer in layers])
    out: dict[int, dict[int, torch.Tensor]] = {}
    for layer in layers:
        z = cache[z_name(layer)]  # [N, W-1, H, d_head]
        out[layer] = {0: z.mean(dim=0)}
        for length in np.unique(lengths):
            out[layer][int(length)] = z[torch.from_numpy(np.asarray(lengths) == length)].mean(dim=0)
    return out


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded permutation of 0..n-1 with no fixed point (the identity when n == 1)."""
    if n < 2:
        return torch.arange(n)
    cycle = torch.randperm(n, generator=generator)  # one random cycle through every row
    out = torch.empty(n, dtype=torch.long)
    out[cycle] = cycle.roll(-1)  # each row takes the next row of the cycle
    return out


def ablate(model, heads: Sequence[Head], mode: str, *, probe_tokens: np.ndarray | None = None,
           probe_lengths: np.ndarray | None = None, seed: int = 0) -> HooksFor:
    """Ablate each head's output (hook_z): mode ``zero``, ``mean`` (needs the probe set) or ``resample``."""
    if mode not in ABLATIONS:
        raise ValueError(f"unknown ablation {mode!r}; known: {', '.join(ABLATIONS)}")
    check_heads(model, heads)
    layers = by_layer(heads)
    means = None
    if mode == "mean":
        if probe_tokens is None or probe_lengths is None:
            raise ValueError("mean ablation needs the probe set (probe_tokens, probe_lengths)")
        means = mean_z(model, heads, probe_tokens, probe_lengths)
    generator = torch.Generator().manual_seed(seed)

    def hooks_for(length: int, inputs: torch.Tensor):
        T = inputs.shape[1]
        cache = None
        if mode == "resample":
            perm = derangement(len(inputs), generator).to(inputs.device)
            _, cache = run_with_cache(model, inputs[perm], [z_name(layer) for layer in layers])
        pairs = []
        for layer, hs in layers.items():
            def fn(z: torch.Tensor, name: str, layer=layer, hs=hs) -> torch.Tensor:
                z = z.clone()  # [B, T, H, d_head]
                if mode == "zero":
                    z[:, :, hs] = 0.0
                elif mode == "mean":
                    table = means[layer].get(length, means[layer][0])  # [W-1, H, d_head]
                    z[:, :, hs] = table[:T, hs].to(z.dtype)
                else:
                    z[:, :, hs] = cache[name][:, :, hs]
                return z
            pairs.append((z_name(layer), fn))
        return pairs

    return hooks_for


# ---------------------------------------------------------------- theory rows (hook_pattern)


def role_rows(role: str, length: int, n_keys: int, *, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(queries, keys) of the role's expected edges at input length ``length``, keys moved by ``shift``
    (clipped to 0..query) and pairs beyond ``n_keys`` positions dropped."""
    queries, keys = expected_keys(role, length)
    keys = np.clip(keys + shift, 0, queries)
    keep = queries < n_keys
    return queries[keep], keys[keep]


def _query_index(queries: np.ndarray, n_queries: int, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Map absolute query positions to rows of a pattern [.., n_queries, n_keys] (the last n_queries
    positions); returns (rows, kept mask)."""
    rows = queries - (n_keys - n_queries)
    return rows, rows >= 0


def zero_edge(model, heads: Sequence[Head], role: str, *, renorm: bool) -> HooksFor:
    """Remove the role's edge from each head's pattern (see the module docstring), renormalised or raw."""
    check_heads(model, heads)
    layers = by_layer(heads)

    def hooks_for(length: int, inputs: torch.Tensor):
        pairs = []
        for layer, hs in layers.items():
            def fn(pattern: torch.Tensor, name: str, hs=hs) -> torch.Tensor:
                Tq, Tk = pattern.shape[-2:]  # [B, H, Tq, Tk]
                queries, keys = role_rows(role, length, Tk)
                rows, kept = _query_index(queries, Tq, Tk)
                rows, keys = torch.as_tensor(rows[kept]), torch.as_tensor(keys[kept])
                pattern = pattern.clone()
                for h in hs:
                    pattern[:, h, rows, keys] = 0.0
                    if renorm:
                        block = pattern[:, h, rows]  # [B, n_rows, Tk]
                        pattern[:, h, rows] = block / block.sum(dim=-1, keepdim=True).clamp_min(1e-12)
                return pattern
            pairs.append((pattern_name(layer), fn))
        return pairs

    return hooks_for


def patch_ideal(model, heads: Sequence[tuple[int, int, str]], *, shift: int = 0) -> HooksFor:
    """Replace the expected rows of each (layer, head, role) by a one-hot on the expected key + ``shift``."""
    check_heads(model, [(layer, head) for layer, head, _ in heads])
    per_layer: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for layer, head, role in heads:
        per_layer[layer].append((head, role))

    def hooks_for(length: int, inputs: torch.Tensor):
        pairs = []
        for layer, items in per_layer.items():
            def fn(pattern: torch.Tensor, name: str, items=items) -> torch.Tensor:
                Tq, Tk = pattern.shape[-2:]  # [B, H, Tq, Tk]
                pattern = pattern.clone()
                for head, role in items:
                    queries, keys = role_rows(role, length, Tk, shift=shift)
                    rows, kept = _query_index(queries, Tq, Tk)
                    rows, keys = torch.as_tensor(rows[kept]), torch.as_tensor(keys[kept])
                    pattern[:, head, rows] = 0.0
                    pattern[:, head, rows, keys] = 1.0
                return pattern
            pairs.append((pattern_name(layer), fn))
        return pairs

    return hooks_for


def patch_from_model(model, source, heads: Sequence[Head], *, source_heads: Sequence[Head] | None = None) -> HooksFor:
    """Replace each head's whole pattern by ``source``'s (another model: a run or a step) on the same
    input; ``source_heads`` (same length as ``heads``) picks which source head feeds each target."""
    check_heads(model, heads)
    source_heads = list(source_heads or heads)
    if len(source_heads) != len(heads):
        raise ValueError("source_heads must pair one source head with each target head")
    check_heads(source, source_heads)
    if source.cfg.n_ctx < model.cfg.n_ctx:
        raise ValueError(f"the source model's context ({source.cfg.n_ctx}) is shorter than this model's ({model.cfg.n_ctx})")
    names = sorted({pattern_name(layer) for layer, _ in source_heads})

    def hooks_for(length: int, inputs: torch.Tensor):
        source.eval()
        _, cache = run_with_cache(source, inputs, names)
        pairs = []
        for layer, hs in by_layer(heads).items():
            feeds = [(h, sh) for (tl, h), sh in zip(heads, source_heads) if tl == layer]
            def fn(pattern: torch.Tensor, name: str, feeds=feeds) -> torch.Tensor:
                pattern = pattern.clone()  # [B, H, Tq, Tk]
                Tq = pattern.shape[-2]
                for h, (sl, sh) in feeds:
                    pattern[:, h] = cache[pattern_name(sl)][:, sh, -Tq:].to(pattern.dtype)
                return pattern
            pairs.append((pattern_name(layer), fn))
        return pairs

    return hooks_for


# ---------------------------------------------------------------- what a failure looks like


@torch.no_grad()
def diagnose(model, tokens: np.ndarray, length: int, step, hooks_for: HooksFor | None = None,
             offsets: Sequence[int] = (-3, -2, -1, 0, 1, 2, 3)) -> dict:
    """At one input length, under an intervention (or none): the accuracy of each y_t, and which input
    the predictions follow. For each offset k, ``follows[k]`` is the share of predicted y_t (t >= 2,
    teacher-forced) equal to ``step(y_{t-1}, x_{t+k})``: k = 0 is the right answer, and a wrong map
    that makes the iteration head read x_{t+2} shows up as follows[2] near 1 (a structured failure)
    rather than chance (about 1 / the number of states). ``step(a, b)`` is the problem's one step."""
    device = next(model.parameters()).device
    model.eval()
    e = length + 1
    inputs = torch.from_numpy(np.asarray(tokens)[:, :-1].astype(np.int64)).to(device)  # [n, W-1]
    if hooks_for is None:
        pred = model(inputs).argmax(dim=-1).cpu().numpy()  # [n, W-1]
    else:
        with hooks(model, hooks_for(length, inputs)):
            pred = model(inputs).argmax(dim=-1).cpu().numpy()
    t = np.arange(1, length + 1)  # [L]
    predicted = pred[:, e + t - 1]  # [n, L]: the prediction of y_t is read at position e + t - 1
    truth = np.asarray(tokens)[:, e + t]  # [n, L]
    follows = {}
    for k in offsets:
        hits = total = 0
        for s in range(2, length + 1):
            if 1 <= s + k <= length:
                candidate = step(tokens[:, e + s - 1], tokens[:, s + k])  # [n]
                hits += int((predicted[:, s - 1] == candidate).sum())
                total += len(tokens)
        if total:
            follows[str(k)] = hits / total
    return {"length": length, "by_t": (predicted == truth).mean(axis=0).tolist(), "follows": follows}
