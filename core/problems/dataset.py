"""Token datasets: encode rows in the paper's layout and build the train / test / probe splits.

One row with input length L, right-padded with EOS to the dataset width W:

    position  0          1 .. L     L+1    L+2 .. 2L+1   2L+2 .. W-1
    token     [problem]  x_1..x_L   [EOI]  y_1 .. y_L    EOS .. EOS

W = 2 * L_width + 3 where L_width is the longest length in the dataset, so every row ends with at
least one EOS (the target after y_L).

The paper's procedure, per length L in min_len..max_len: draw n_train + n_test rows with
replacement (i.i.d. inputs, so already in random order) and take the first n_train as train, the
rest as test. Train and test therefore overlap at short lengths, as in the paper. Lengths
max_len+1 .. test_max_len are held out: they appear only in test, n_test_per_len rows each.
A mixture "a+b" takes round(data_mix * n) rows (rounded half up) from a and the rest from b, in
every split and length, then shuffles them together. The probe set (probe_per_len rows for every
length, train and held-out) is what attention snapshots are computed on.

Each length draws from its own generator, seeded by (data_seed, stream, L) with one stream for
train/test and one for the probe set. So a dataset is deterministic for a data_seed, the probe set
does not depend on max_len or the split sizes, and sweeping max_len with the same problem, seed
and split sizes keeps the rows of the shorter lengths unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.names import TEST, TRAIN
from core.problems import tokens
from core.problems.problem import Problem
from core.problems.registry import get_problem

SPLITS = (TRAIN, TEST, "probe")  # the two metric splits (core.names), and the probe set scores are read on
_DATA_STREAM, _PROBE_STREAM = 0, 1


@dataclass(frozen=True, eq=False)
class Dataset:
    """Three splits of uint8 token rows, sorted by length (ascending), shuffled within a length."""

    train_tokens: np.ndarray  # [N_train, W] uint8
    train_lengths: np.ndarray  # [N_train] int16
    test_tokens: np.ndarray  # [N_test, W] uint8
    test_lengths: np.ndarray  # [N_test] int16
    probe_tokens: np.ndarray  # [N_probe, W] uint8
    probe_lengths: np.ndarray  # [N_probe] int16
    width: int

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, lengths) of the split "train", "test" or "probe"."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; known splits: {', '.join(SPLITS)}")
        return getattr(self, f"{name}_tokens"), getattr(self, f"{name}_lengths")

    def lengths(self, name: str) -> np.ndarray:
        """The distinct lengths present in a split, ascending."""
        return np.unique(self.split(name)[1])

    def rows(self, name: str, length: int) -> slice:
        """The contiguous rows of one length in a split (rows are sorted by length)."""
        lengths = self.split(name)[1]
        start, stop = np.searchsorted(lengths, [length, length + 1])
        return slice(int(start), int(stop))


def width_for(max_len: int, test_max_len: int | None = None) -> int:
    """Row width 2 * L_width + 3 for the longest length L_width of the dataset."""
    return 2 * max(max_len, test_max_len or 0) + 3


def encode(
    problem_token: int | np.ndarray, x: np.ndarray, y: np.ndarray, width: int
) -> np.ndarray:
    """Lay out rows as [problem] x [EOI] y EOS..EOS; problem_token is one id or one per row."""
    n, length = x.shape  # x, y: [n, L]
    if y.shape != x.shape:
        raise ValueError(f"x and y must have the same shape (got {x.shape} and {y.shape})")
    if width < 2 * length + 3:
        need = 2 * length + 3
        raise ValueError(f"width {width} leaves no EOS after length {length}; need >= {need}")
    rows = np.full((n, width), tokens.EOS, dtype=np.uint8)  # [n, W]
    rows[:, 0] = problem_token
    rows[:, 1 : length + 1] = x
    rows[:, length + 1] = tokens.EOI
    rows[:, length + 2 : 2 * length + 2] = y
    return rows


def build_dataset(spec: Any) -> Dataset:
    """Build the train, test and probe splits for a ProblemSpec (any object with its attributes)."""
    parts = get_problem(spec.problem).parts
    mix = float(spec.data_mix) if len(parts) == 2 else 1.0
    test_max_len = spec.test_max_len if spec.test_max_len is not None else spec.max_len
    if not 1 <= spec.min_len <= spec.max_len <= test_max_len:
        raise ValueError(
            "need 1 <= min_len <= max_len <= test_max_len "
            f"(got {spec.min_len}, {spec.max_len}, {spec.test_max_len})"
        )
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"data_mix must be in [0, 1] (got {spec.data_mix})")
    width = width_for(spec.max_len, test_max_len)
    draw = dict(parts=parts, mix=mix, width=width)

    train, test, probe = [], [], []
    for length in range(spec.min_len, test_max_len + 1):
        rng = _stream(spec.data_seed, _DATA_STREAM, length)
        if length <= spec.max_len:
            train_rows, test_rows = _draw_splits(
                rng, length=length, sizes=(spec.n_train_per_len, spec.n_test_per_len), **draw
            )
            train.append((length, train_rows))
        else:  # held-out length: test only
            (test_rows,) = _draw_splits(rng, length=length, sizes=(spec.n_test_per_len,), **draw)
        test.append((length, test_rows))
        probe_rng = _stream(spec.data_seed, _PROBE_STREAM, length)
        (probe_rows,) = _draw_splits(probe_rng, length=length, sizes=(spec.probe_per_len,), **draw)
        probe.append((length, probe_rows))

    return Dataset(*_stack(train), *_stack(test), *_stack(probe), width=width)


def _stream(data_seed: int, kind: int, length: int) -> np.random.Generator:
    """An independent generator for one (seed, data or probe, length)."""
    return np.random.default_rng(np.random.SeedSequence(data_seed, spawn_key=(kind, length)))


def _draw_splits(
    rng: np.random.Generator,
    *,
    parts: tuple[Problem, ...],
    mix: float,
    length: int,
    width: int,
    sizes: tuple[int, ...],
) -> list[np.ndarray]:
    """Rows of one length for consecutive splits of the given sizes, [size, W] each.

    Each part draws the rows of all splits at once and cuts them in order (the paper's "draw
    n_train + n_test, split"; i.i.d. draws are already in random order). The first part gets
    round(mix * size) rows of every split, the second the rest; each split is then shuffled.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in sizes]
    for index, problem in enumerate(parts):
        counts = [_share(mix, size, first=index == 0) for size in sizes]
        x = problem.sample(rng, sum(counts), length)  # [n, L]
        rows = encode(problem.token, x, problem.iterate(x), width)  # [n, W]
        for block, piece in zip(blocks, np.split(rows, np.cumsum(counts)[:-1])):
            block.append(piece)
    return [_shuffled(rng, np.concatenate(block)) for block in blocks]


def _share(mix: float, size: int, *, first: bool) -> int:
    """Rows of a split that go to the first part (mix * size, rounded half up) or the second."""
    n_first = int(np.floor(mix * size + 0.5))
    return n_first if first else size - n_first


def _shuffled(rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
    return rows[rng.permutation(len(rows))]


def _stack(blocks: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate (length, rows) blocks, given in ascending length -> (tokens, lengths int16)."""
    row_tokens = np.concatenate([rows for _, rows in blocks])  # [N, W]
    lengths = np.concatenate(
        [np.full(len(rows), length, dtype=np.int16) for length, rows in blocks]
    )  # [N]
    return row_tokens, lengths
