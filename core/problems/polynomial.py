"""Polynomial iteration: y_1 = x_1, y_t = (y_{t-1} * x_t + 1) mod 11, inputs uniform on 1..10.

Worked example (docs/paper.md): x = 9 9 10 8 gives y = 9 5 7 2, since 9*9+1 = 82 = 5 (mod 11),
5*10+1 = 51 = 7 and 7*8+1 = 57 = 2. Input 0 never appears; states take all values 0..10.
"""

from __future__ import annotations

import numpy as np

from core.names import POLYNOMIAL
from core.problems import tokens
from core.problems.problem import Problem

MODULUS = 11


def sample(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return rng.integers(1, MODULUS, size=(n, length), dtype=np.uint8)  # [n, L], 1..10


def iterate(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)  # [n, L]
    y = np.empty_like(x)  # [n, L]
    if x.shape[1] == 0:
        return y.astype(np.uint8)
    y[:, 0] = x[:, 0]
    for t in range(1, x.shape[1]):  # sequential in t, vectorised over rows
        y[:, t] = (y[:, t - 1] * x[:, t] + 1) % MODULUS
    return y.astype(np.uint8)


PROBLEM = Problem(
    name=POLYNOMIAL,
    token=tokens.POLYNOMIAL,
    inputs=range(1, MODULUS),
    n_values=MODULUS,
    sample=sample,
    iterate=iterate,
)
