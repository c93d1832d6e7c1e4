"""Binary copy: bits x_t ~ Bernoulli(1/2), y_t = x_t.

Example: x = 0 1 1 0 gives y = 0 1 1 0. The iteration ignores the previous state, so only the
"fetch x_t" half of the circuit is needed.
"""

from __future__ import annotations

import numpy as np

from core.names import BINARY_COPY
from core.problems import tokens
from core.problems.problem import Problem


def sample(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return rng.integers(0, 2, size=(n, length), dtype=np.uint8)  # [n, L], fair bits


def iterate(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.uint8, copy=True)  # [n, L]


PROBLEM = Problem(
    name=BINARY_COPY,
    token=tokens.BINARY_COPY,
    inputs=range(0, 2),
    n_values=2,
    sample=sample,
    iterate=iterate,
)
