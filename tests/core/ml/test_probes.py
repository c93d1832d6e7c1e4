"""Linear probes: readable quantities are read, noise is not, labels follow the theory's positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.ml.model import ModelConfig, Transformer
from core.ml.probes import collect, fit_probe, probe
from core.problems import build_dataset


def test_fit_probe_reads_a_linear_class_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=400)
    groups = np.arange(400) // 4
    X = np.eye(4)[y] @ rng.normal(size=(4, 8)) + 0.01 * rng.normal(size=(400, 8))  # class means, tiny noise
    accuracy, chance, n_train, n_test, n_classes = fit_probe(X, y, groups)
    assert accuracy == 1.0 and chance < 0.5 and n_train + n_test == 400 and n_classes == 4
    noise, *_ = fit_probe(rng.normal(size=(400, 8)), y, groups)
    assert noise < 0.5


def test_collect_labels_follow_the_layout_and_the_token_embedding_gives_the_token(tiny_spec):
    spec = tiny_spec(problem="polynomial", n_test_per_len=16)
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_spec(spec))
    tokens, lengths = build_dataset(spec.problem).split("test")
    X, groups, labels = collect(model, tokens, lengths, "hook_embed")
    assert len(X) == lengths.sum() and X.shape[1] == spec.model.d_model
    first = lengths[0]
    assert list(labels["t"][:first]) == list(range(1, first + 1))
    assert list(labels["x_t"][:first]) == list(tokens[0, 1:first + 1])
    assert labels["eoi_position"][0] == first + 1 and labels["length"][0] == first
    (result,) = probe(model, tokens, lengths, "hook_embed", ["y_prev"])
    assert result.accuracy > 0.95 and result.accuracy > result.chance  # the token at p is in its embedding
    with pytest.raises(ValueError, match="unknown probe target"):
        probe(model, tokens, lengths, "hook_embed", ["colour"])
