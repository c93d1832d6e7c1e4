"""Activation patching: clean -> clean changes nothing, the grid sits between its baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.ml.model import ModelConfig, Transformer
from core.ml.patching import activation_patching, corrupt_rows
from core.problems import build_dataset


@pytest.fixture
def rows(tiny_spec):
    spec = tiny_spec(problem="polynomial")
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_spec(spec)).eval()
    tokens, lengths = build_dataset(spec.problem).split("test")
    clean = tokens[lengths == 4]
    return model, clean


def test_corrupt_rows_picks_another_row_of_the_same_length():
    lengths = np.array([3, 3, 4, 4, 4, 5])
    other = corrupt_rows(lengths, seed=0)
    assert np.all(lengths[other] == lengths)
    assert np.all(other[:5] != np.arange(5)) and other[5] == 5  # a lone row is its own partner


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out"])
@pytest.mark.parametrize("metric", ["accuracy", "logit_diff"])
def test_patching_clean_into_clean_leaves_the_metric_unchanged(rows, site, metric):
    model, clean = rows
    corrupted = clean[::-1].copy()  # only to pick the logit_diff tokens; the patched run is clean
    result = activation_patching(model, clean, clean, 4, site=site, metric="accuracy", loss_on="all")
    assert np.allclose(result.grid, result.clean) and result.corrupted == result.clean
    if metric == "logit_diff":
        result = activation_patching(model, clean, corrupted, 4, site=site, metric=metric, loss_on="all", positions=[0, 3])
        assert len(result.grid) == 2 and len(result.grid[0]) == 2
        assert np.isfinite(result.clean) and result.clean != result.corrupted


def test_patching_the_whole_input_restores_the_clean_run(rows):
    """Patching layer 0's resid_pre at a position overwrites that token; at every input position, the clean run."""
    model, clean = rows
    corrupted = clean[corrupt_rows(np.full(len(clean), 4), seed=1)]
    result = activation_patching(model, clean, corrupted, 4, site="resid_pre", metric="logit_diff",
                                 loss_on="all", layers=[0], positions=[2])
    assert result.clean > result.corrupted  # clean targets are likelier on the clean run
    assert result.grid[0][0] != result.corrupted  # patching one input position moves the metric
    with pytest.raises(ValueError, match="unknown patching site"):
        activation_patching(model, clean, corrupted, 4, site="hook_q", metric="accuracy", loss_on="all")
