"""What a problem is: a seeded input sampler and the iteration that turns inputs into states.

A problem reads inputs x_1..x_L and writes its chain of thought y_1..y_L, where each state y_t
depends only on y_{t-1} and x_t. Both functions work on many rows at once:

    sample(rng, n, length) -> x   [n, L] uint8
    iterate(x)             -> y   [n, L] uint8

A mixture "a+b" is two problems sharing one dataset; the first token of each row says which one
produced it. Code that builds data only needs ``parts``: one problem for a plain problem, two
(first, second) for a mixture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]
Iteration = Callable[[np.ndarray], np.ndarray]


class ProblemError(ValueError):
    """An unknown or malformed problem name (a ValueError, so spec validators report it)."""


@dataclass(frozen=True)
class Problem:
    """One iterative problem.

    ``inputs`` is the range the inputs are drawn from (polynomial: 1..10, bits: 0..1);
    ``n_values`` is the number of values a state can take (states are 0..n_values-1).
    """

    name: str
    token: int
    inputs: range
    n_values: int
    sample: Sampler
    iterate: Iteration

    @property
    def parts(self) -> tuple[Problem, ...]:
        return (self,)


@dataclass(frozen=True)
class Mixture:
    """Two distinct problems in one dataset; ``data_mix`` rows come from ``first``."""

    name: str
    first: Problem
    second: Problem

    @property
    def parts(self) -> tuple[Problem, ...]:
        return (self.first, self.second)
