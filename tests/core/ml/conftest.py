"""Fixtures for the model, metrics, evaluation and training tests: one CPU thread, tiny specs.

Every spec here is tiny (d_model <= 32, max_len <= 4, a few dozen rows per length, <= 60 steps) so
the whole directory runs in seconds on a shared 2-core machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.ml import checkpoints
from core.ml.train import Callbacks
from core.specs.run import RunSpec

TINY = {
    "problem": "parity",
    "max_len": 4,
    "n_train_per_len": 32,
    "n_test_per_len": 16,
    "probe_per_len": 2,
    "d_model": 16,
    "steps": 12,
    "batch_size": 16,
    "lr": 1e-2,
    "dropout": 0.0,
    "eval_every": 6,
    "snapshot_every": 6,
    "checkpoint_every": 6,
    "eval_generate": False,
}


@pytest.fixture(autouse=True)
def _one_thread_for_every_test(one_thread):
    """Every test here runs the model: one torch thread each (the fixture is in tests/conftest.py)."""


@pytest.fixture
def tiny_spec():
    """tiny_spec(**overrides) -> a validated RunSpec built on TINY."""

    def make(**overrides) -> RunSpec:
        return RunSpec.from_flat({**TINY, **overrides})

    return make


class Recorder(Callbacks):
    """Keeps everything the trainer reports, in call order."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.metric_calls: list[tuple[int, dict[str, float]]] = []
        self.snapshots: dict[int, tuple[bytes, dict]] = {}
        self.checkpoints: dict[tuple[int, str], bytes] = {}
        self.probe: tuple[np.ndarray, np.ndarray] | None = None
        self.progress_steps: list[int] = []
        self.stop_after = stop_after  # should_stop() returns True from call stop_after + 1 on
        self.stop_calls = 0

    def probe_set(self, tokens, lengths) -> None:
        self.probe = (tokens.copy(), lengths.copy())

    def metrics(self, step, values) -> None:
        self.metric_calls.append((step, dict(values)))

    def snapshot(self, step, blob, layout) -> None:
        self.snapshots[step] = (blob, layout)

    def checkpoint(self, step, kind, data) -> None:
        self.checkpoints[(step, kind)] = data

    def progress(self, progress) -> None:
        self.progress_steps.append(progress.step)

    def should_stop(self) -> bool:
        self.stop_calls += 1
        return self.stop_after is not None and self.stop_calls > self.stop_after

    def weights(self, step: int, kind: str = checkpoints.RESUME) -> dict[str, torch.Tensor]:
        """The model state dict of the checkpoint of ``kind`` at ``step``."""
        return checkpoints.from_bytes(self.checkpoints[(step, kind)])["model"]


@pytest.fixture
def recorder():
    """recorder(stop_after=None) -> a fresh Recorder."""
    return Recorder


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bitwise equality of two state dicts."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def weights_equal():
    return same_weights
