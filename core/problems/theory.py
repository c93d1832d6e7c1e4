"""What the theory expects: where the iteration-head circuit attends, and which targets are scored.

Positions count from 0 in the layout [problem] x_1..x_L [EOI] y_1..y_L EOS..; the EoI token sits
at e = L + 1, x_t at t and y_t at e + t. The circuit has two roles:

- "eoi_locator" (layer 0): every chain-of-thought position e + t (t = 1..L) attends to e, which
  lets the first MLP turn "distance to EoI" into the position to fetch next.
- "iteration" (layer 1): the position that predicts y_t, e + t - 1 (EoI itself for t = 1, else
  y_{t-1}), attends to x_t at position t; the second MLP then applies the step to (y_{t-1}, x_t).

Worked example, L = 3 (e = 4): eoi_locator pairs (5,4) (6,4) (7,4); iteration pairs (4,1) (5,2)
(6,3), as (query, key).

A target index j scores the prediction of token j + 1 (logits at position j). supervised_mask
says which targets the loss and the accuracy count: "all" (the paper) takes every target
strictly after EoI, y_1..y_L and all EOS padding to the width; "cot" takes y_1..y_L and the one
EOS after y_L.
"""

from __future__ import annotations

import numpy as np

from core.names import EOI_LOCATOR, ITERATION, ROLES

FIGURE_MIN_LEN = 4  # the paper's figures average L = 4..max_len: short rows overlap train and test
LOSS_ON = ("all", "cot")


def figure_lengths(min_len: int, max_len: int) -> tuple[int, int]:
    """(lo, hi), the lengths the paper's averages cover: 4..max_len, or min_len..max_len when max_len < 4."""
    return (max(min_len, FIGURE_MIN_LEN) if max_len >= FIGURE_MIN_LEN else min_len), max_len


def eoi_position(length: int) -> int:
    """Position of the EoI token in a row of input length L."""
    return length + 1


def expected_keys(role: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries, keys), both [L] int64: query position queries[i] should attend to keys[i]."""
    e = eoi_position(length)
    t = np.arange(1, length + 1)  # [L], t = 1..L
    if role == EOI_LOCATOR:
        return e + t, np.full(length, e)
    if role == ITERATION:
        return e + t - 1, t
    raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")


def expected_mask(role: str, length: int, width: int) -> np.ndarray:
    """[width, width] bool (query, key), True at the cells the theory expects, for overlays."""
    queries, keys = expected_keys(role, length)
    if width < 2 * length + 2:
        need = 2 * length + 2
        raise ValueError(f"width {width} is too small for length {length}; need >= {need}")
    mask = np.zeros((width, width), dtype=bool)  # [query, key]
    mask[queries, keys] = True
    return mask


def supervised_mask(lengths: np.ndarray, width: int, loss_on: str) -> np.ndarray:
    """[n, width-1] bool over targets: True where target j (predicting token j+1) is scored."""
    lengths = np.asarray(lengths, dtype=np.int64)[:, None]  # [n, 1]
    if np.any(2 * lengths + 3 > width):
        raise ValueError(f"width {width} leaves no EOS after the longest length {lengths.max()}")
    target = np.arange(width - 1)[None, :]  # [1, W-1]
    after_eoi = target >= lengths + 1  # token j+1 >= e+1: y_1 onwards
    if loss_on == "all":
        return after_eoi  # [n, W-1]
    if loss_on == "cot":
        return after_eoi & (target <= 2 * lengths + 1)  # up to the EOS at 2L+2
    raise ValueError(f"unknown loss_on {loss_on!r}; known: {', '.join(LOSS_ON)}")
