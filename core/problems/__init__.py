"""Torch-free problem registry: token ids, problems and their data, and the theory's positions.

    get_problem("polynomial")      -> Problem (name, token, sample, iterate)
    get_problem("parity+polynomial") -> Mixture (parts: first, second)
    build_dataset(problem_spec)    -> Dataset (train / test / probe uint8 token rows)
    expected_keys("iteration", L)  -> (queries, keys) the circuit should attend along
"""

from core.names import EXPECTED_LAYER, ROLES  # the roles' names, re-exported beside the theory that uses them
from core.problems import tokens
from core.problems.dataset import SPLITS, Dataset, build_dataset, encode, width_for
from core.problems.problem import Mixture, Problem, ProblemError
from core.problems.registry import PROBLEMS, get_problem
from core.problems.theory import (
    LOSS_ON,
    eoi_position,
    expected_keys,
    figure_lengths,
    expected_mask,
    supervised_mask,
)

__all__ = [
    "EXPECTED_LAYER",
    "LOSS_ON",
    "PROBLEMS",
    "ROLES",
    "SPLITS",
    "Dataset",
    "Mixture",
    "Problem",
    "ProblemError",
    "build_dataset",
    "encode",
    "eoi_position",
    "expected_keys",
    "expected_mask",
    "figure_lengths",
    "get_problem",
    "supervised_mask",
    "tokens",
    "width_for",
]
