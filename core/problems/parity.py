"""Parity: bits x_t ~ Bernoulli(1/2), y_t = (x_1 + ... + x_t) mod 2 (the running parity).

Example: x = 1 0 1 1 gives y = 1 1 0 1. As an iteration: y_t = y_{t-1} XOR x_t, with y_0 = 0.
"""

from __future__ import annotations

import numpy as np

from core.names import PARITY
from core.problems import tokens
from core.problems.problem import Problem


def sample(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return rng.integers(0, 2, size=(n, length), dtype=np.uint8)  # [n, L], fair bits


def iterate(x: np.ndarray) -> np.ndarray:
    prefix_sums = np.cumsum(np.asarray(x, dtype=np.int64), axis=1)  # [n, L]
    return (prefix_sums % 2).astype(np.uint8)


PROBLEM = Problem(
    name=PARITY,
    token=tokens.PARITY,
    inputs=range(0, 2),
    n_values=2,
    sample=sample,
    iterate=iterate,
)
