"""Activation patching: which activations carry the information the answer needs, layer by position.

Run the model on a *corrupted* input (here: another sequence of the same length, so every position
means the same thing and only the values differ), and put back one activation from the *clean*
run, one (layer, position) at a time, at a hook site (``resid_pre``, ``resid_mid``, ``resid_post``,
``attn_out``, ``mlp_out``). The metric is measured against the clean sequence's targets:

- ``accuracy``: the share of rows whose every supervised target (core.problems.supervised_mask)
  is the clean one (the paper's sequence accuracy, teacher-forced);
- ``logit_diff``: mean over the supervised targets where the clean and corrupted sequences differ
  of logit[clean token] - logit[corrupted token].

The grid [n_layers, positions] sits between the corrupted baseline (nothing patched) and the
clean one. Patching clean into clean changes nothing (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.ml.hooks import hooks, run_with_cache
from core.names import PATCH_METRICS, PATCH_SITES, hook_name
from core.problems import supervised_mask


@dataclass
class PatchingResult:
    site: str
    metric: str
    length: int
    layers: list[int]
    positions: list[int]
    grid: list[list[float]]  # [layer][position]
    clean: float
    corrupted: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def corrupt_rows(lengths: np.ndarray, *, seed: int) -> np.ndarray:
    """For each row, the index of another row of the same length (seeded; itself when it is alone)."""
    rng = np.random.default_rng(seed)
    out = np.arange(len(lengths))
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        if len(rows) > 1:
            cycle = rng.permutation(rows)
            out[cycle] = np.roll(cycle, -1)  # each row takes the next of a random cycle: never itself
    return out


def metric_value(logits: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor, mask: torch.Tensor,
                 metric: str) -> float:
    """logits [n, T, V] against clean targets [n, T] (and corrupted targets, for logit_diff); mask [n, T]."""
    if metric == "accuracy":
        right = (logits.argmax(dim=-1) == clean) | ~mask  # [n, T]
        return float(right.all(dim=1).float().mean())
    if metric == "logit_diff":
        differ = mask & (clean != corrupted)  # [n, T]
        if not differ.any():
            return float("nan")
        gap = logits.gather(-1, clean[..., None])[..., 0] - logits.gather(-1, corrupted[..., None])[..., 0]  # [n, T]
        return float(gap[differ].mean())
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(PATCH_METRICS)}")


@torch.no_grad()
def activation_patching(model, clean_tokens: np.ndarray, corrupted_tokens: np.ndarray, length: int, *,
                        site: str, metric: str, loss_on: str, layers: list[int] | None = None,
                        positions: list[int] | None = None) -> PatchingResult:
    """Patch clean -> corrupted at ``site`` for every (layer, position); rows [n, W] all of input length
    ``length``. Positions default to every input position of the row's real part (0..2L+1)."""
    if site not in PATCH_SITES:
        raise ValueError(f"unknown patching site {site!r}; known: {', '.join(PATCH_SITES)}")
    if metric not in PATCH_METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(PATCH_METRICS)}")
    device = next(model.parameters()).device
    model.eval()
    width = clean_tokens.shape[1]
    clean = torch.from_numpy(clean_tokens).to(device=device, dtype=torch.long)  # [n, W]
    corrupted = torch.from_numpy(corrupted_tokens).to(device=device, dtype=torch.long)  # [n, W]
    mask = torch.from_numpy(supervised_mask(np.full(len(clean), length), width, loss_on)).to(device)  # [n, W-1]
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    positions = list(range(2 * length + 2)) if positions is None else positions
    names = {layer: hook_name(layer, site) for layer in layers}

    def score(logits: torch.Tensor) -> float:
        return metric_value(logits, clean[:, 1:], corrupted[:, 1:], mask, metric)

    clean_logits, cache = run_with_cache(model, clean[:, :-1], list(names.values()))
    grid = []
    for layer in layers:
        row = []
        for position in positions:
            def put(x: torch.Tensor, name: str, position=position) -> torch.Tensor:
                x = x.clone()  # [n, T, d_model]
                x[:, position] = cache[name][:, position]
                return x
            with hooks(model, [(names[layer], put)]):
                row.append(score(model(corrupted[:, :-1])))
        grid.append(row)
    return PatchingResult(site=site, metric=metric, length=length, layers=layers, positions=positions,
                          grid=grid, clean=score(clean_logits), corrupted=score(model(corrupted[:, :-1])))
