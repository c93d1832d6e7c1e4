"""Head scores: how closely each head's attention follows the iteration-head circuit.

For a role (``eoi_locator`` or ``iteration``), a sequence s of input length L and t = 1..L, the
theory names one expected key per query; a_t(s) is the attention weight the head puts on it.
Over the probe sequences of one length (docs/paper.md, "The circuit and its scores"):

- ``peaky_abs``   = mean of a_t(s): mean attention on the expected key;
- ``peaky_thres`` = mean of [a_t(s) > 0.5]: the "attention peakiness" of the paper's figures;
- ``inv``         = 1 - mean over t of the std over s of a_t(s): invariance across sequences;
- ``mul``         = TransformerLens's ``detect_head`` "mul" score: the share of the head's whole
  attention mass over the sequence's real query rows that lands on the expected cells. Its ceiling
  is below 1 because only L of the 2L+2 rows have an expected cell.

Every (layer, head) is scored for both roles, so a circuit that forms in an unexpected place still
shows up. Scores are averaged over L = 4..max_len as the paper's figures are (all lengths when the
range has none >= 4). Pure numpy, so stored snapshots can be re-scored anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.names import INV, MUL, PEAKY_ABS, PEAKY_THRES, SCORES
from core.problems import ROLES, expected_keys, figure_lengths

THRESHOLD = 0.5


@dataclass(frozen=True)
class HeadScores:
    """scores[role][score] -> array [n_layers, n_heads, n_lengths]; lengths in the same order."""

    lengths: list[int]
    scores: dict[str, dict[str, np.ndarray]]

    def averaged(self, role: str, score: str, max_len: int) -> np.ndarray:
        """[n_layers, n_heads], averaged over the lengths of the paper's figures (figure_lengths)."""
        lengths = np.array(self.lengths)
        lo, hi = figure_lengths(int(lengths.min()), max_len)
        keep = (lengths >= lo) & (lengths <= hi)
        return self.scores[role][score][:, :, keep].mean(axis=-1)


def score_patterns(patterns: np.ndarray, lengths: np.ndarray) -> HeadScores:
    """patterns [N, n_layers, n_heads, W, W] on the probe set, lengths [N] -> HeadScores."""
    _, n_layers, n_heads, _, _ = patterns.shape
    unique = sorted(set(int(x) for x in lengths))
    out = {role: {s: np.zeros((n_layers, n_heads, len(unique))) for s in SCORES} for role in ROLES}
    for j, length in enumerate(unique):
        group = patterns[lengths == length]  # [n, n_layers, n_heads, W, W]
        real = 2 * length + 2
        for role in ROLES:
            queries, keys = expected_keys(role, length)
            a = group[:, :, :, queries, keys]  # [n, n_layers, n_heads, L]
            std = a.std(axis=0, ddof=1) if len(group) > 1 else np.zeros_like(a[0])
            on_cells = a.sum(axis=-1)  # [n, n_layers, n_heads]
            mass = group[:, :, :, :real, :real].sum(axis=(-1, -2))  # [n, n_layers, n_heads]
            out[role][PEAKY_ABS][:, :, j] = a.mean(axis=(0, -1))
            out[role][PEAKY_THRES][:, :, j] = (a > THRESHOLD).mean(axis=(0, -1))
            out[role][INV][:, :, j] = 1.0 - std.mean(axis=-1)
            out[role][MUL][:, :, j] = (on_cells / mass).mean(axis=0)
    return HeadScores(lengths=unique, scores=out)


def ideal_pattern(role: str, length: int, width: int) -> np.ndarray:
    """The theory's pattern [W, W]: expected rows put all weight on their key, other rows attend to themselves."""
    pattern = np.eye(width)
    queries, keys = expected_keys(role, length)
    pattern[queries] = 0.0
    pattern[queries, keys] = 1.0
    return pattern
