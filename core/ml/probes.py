"""Linear probes: is a quantity linearly readable from a hook site's activations?

Data points are the chain-of-thought query positions p = e + t - 1 (t = 1..L, e = L + 1 the EoI
position): the positions that predict y_t, where the circuit must know where it is. Targets:

- ``eoi_position``: e;  ``length``: L;  ``t``: the index of the y being predicted;
- ``y_prev``: the token at p (y_{t-1}, or EoI for t = 1);  ``x_t``: the input token x_t.

The probe is closed-form ridge regression onto one-hot classes (argmax to predict), on standardised
features, fitted on 75% of the *sequences* and scored on the other 25% (positions of one sequence
never straddle the split). ``chance`` is the held-out accuracy of always answering the most frequent
training class, the floor a probe must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.ml.hooks import run_with_cache
from core.names import PROBE_TARGETS



@dataclass
class ProbeResult:
    target: str
    site: str
    accuracy: float
    chance: float
    n_train: int
    n_test: int
    n_classes: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def collect(model, tokens: np.ndarray, lengths: np.ndarray, site: str, *, chunk: int = 512
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Activations at ``site`` on the CoT query positions -> (X [M, d], row ids [M], {target: labels [M]})."""
    device = next(model.parameters()).device
    model.eval()
    feats, groups, labels = [], [], {name: [] for name in PROBE_TARGETS}
    for start in range(0, len(tokens), chunk):
        batch = np.asarray(tokens[start:start + chunk])
        _, cache = run_with_cache(model, torch.from_numpy(batch[:, :-1].astype(np.int64)).to(device), [site])
        acts = cache[site].float().cpu().numpy()  # [n, T, d]
        if acts.ndim != 3:
            raise ValueError(f"hook site {site} gives shape {acts.shape}; a probe needs [batch, pos, d]")
        for i, length in enumerate(lengths[start:start + chunk]):
            length = int(length)
            e = length + 1
            t = np.arange(1, length + 1)  # [L]
            p = e + t - 1  # [L] query positions
            feats.append(acts[i, p])
            groups.append(np.full(length, start + i))
            labels["eoi_position"].append(np.full(length, e))
            labels["length"].append(np.full(length, length))
            labels["t"].append(t)
            labels["y_prev"].append(batch[i, p].astype(np.int64))
            labels["x_t"].append(batch[i, t].astype(np.int64))
    return np.concatenate(feats), np.concatenate(groups), {k: np.concatenate(v) for k, v in labels.items()}


def fit_probe(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, seed: int = 0, holdout: float = 0.25,
              ridge: float = 1e-2) -> tuple[float, float, int, int, int]:
    """Ridge probe; returns (held-out accuracy, chance, n_train, n_test, n_classes)."""
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    test_groups = rng.choice(unique, size=max(1, int(round(holdout * len(unique)))), replace=False)
    test = np.isin(groups, test_groups)
    if test.all() or not test.any():
        raise ValueError("a probe needs at least two sequences (one to fit, one to score)")
    mean, std = X[~test].mean(axis=0), X[~test].std(axis=0) + 1e-6
    Z = np.hstack([(X - mean) / std, np.ones((len(X), 1))])  # [M, d + 1], a bias column
    classes = np.unique(y[~test])
    Y = (y[~test, None] == classes[None, :]).astype(np.float64)  # [M_train, C] one-hot
    A = Z[~test].T @ Z[~test] + ridge * len(Z[~test]) * np.eye(Z.shape[1])
    W = np.linalg.solve(A, Z[~test].T @ Y)  # [d + 1, C]
    predicted = classes[(Z[test] @ W).argmax(axis=1)]
    majority = classes[Y.sum(axis=0).argmax()]
    return (float((predicted == y[test]).mean()), float((y[test] == majority).mean()),
            int((~test).sum()), int(test.sum()), len(classes))


def probe(model, tokens: np.ndarray, lengths: np.ndarray, site: str, targets=PROBE_TARGETS, *, seed: int = 0
          ) -> list[ProbeResult]:
    """Fit one probe per target on ``site``'s activations over the given rows."""
    unknown = [t for t in targets if t not in PROBE_TARGETS]
    if unknown:
        raise ValueError(f"unknown probe target(s) {unknown}; known: {', '.join(PROBE_TARGETS)}")
    X, groups, labels = collect(model, tokens, lengths, site)
    out = []
    for target in targets:
        accuracy, chance, n_train, n_test, n_classes = fit_probe(X, labels[target], groups, seed=seed)
        out.append(ProbeResult(target, site, accuracy, chance, n_train, n_test, n_classes))
    return out
