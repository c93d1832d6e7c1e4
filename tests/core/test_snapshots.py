"""Attention snapshots: the packed format round-trips, and a paper-size snapshot stays small."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from core.snapshots import FORMAT, pack, real_width, unpack


def random_patterns(lengths, *, n_layers=2, n_heads=3, width=11, seed=0) -> np.ndarray:
    """Values everywhere (also above the diagonal and in the padding) so that dropping them shows."""
    rng = np.random.default_rng(seed)
    return rng.random((len(lengths), n_layers, n_heads, width, width)).astype(np.float32)


def test_round_trip_keeps_the_real_causal_block_and_zeros_the_rest():
    lengths = np.array([1, 3, 4, 4, 2], dtype=np.int16)
    patterns = random_patterns(lengths)
    blob, layout = pack(patterns, lengths)
    assert layout == {"format": FORMAT, "n_layers": 2, "n_heads": 3, "width": 11, "lengths": [1, 3, 4, 4, 2]}
    out = unpack(blob, layout)
    assert out.shape == patterns.shape and out.dtype == np.float32
    for i, length in enumerate(lengths):
        w = real_width(int(length))
        keep = np.zeros((11, 11), dtype=bool)
        keep[:w, :w] = np.tril(np.ones((w, w), dtype=bool))
        np.testing.assert_allclose(out[i][..., keep], patterns[i][..., keep], atol=1e-3, rtol=1e-3)
        assert np.all(out[i][..., ~keep] == 0)
        # float16 exactly: each kept value is the float16 nearest to the original
        np.testing.assert_array_equal(out[i][..., keep], patterns[i][..., keep].astype(np.float16).astype(np.float32))


def test_layer_and_head_order_survive_the_round_trip():
    lengths = np.array([2, 3])
    patterns = np.zeros((2, 2, 3, 9, 9), dtype=np.float32)
    for layer in range(2):
        for head in range(3):
            patterns[:, layer, head] = np.tril(np.ones((9, 9))) * (10 * layer + head + 1)
    out = unpack(*pack(patterns, lengths))
    for layer in range(2):
        for head in range(3):
            assert out[0, layer, head, 5, 0] == 10 * layer + head + 1
            assert out[1, layer, head, 7, 7] == 10 * layer + head + 1
    assert out[0, 1, 2, 6, 0] == 0  # outside length 2's real block (6 positions)


def test_the_blob_holds_only_the_real_lower_triangles():
    lengths = np.array([1, 4])
    patterns = random_patterns(lengths, n_layers=1, n_heads=1)
    blob, _ = pack(patterns, lengths)
    n_values = sum(real_width(n) * (real_width(n) + 1) // 2 for n in (1, 4))  # 10 + 55
    assert len(zlib.decompress(blob)) == 2 * n_values


def test_unpack_rejects_a_foreign_format_and_a_mismatched_layout():
    lengths = np.array([2, 3])
    blob, layout = pack(random_patterns(lengths), lengths)
    with pytest.raises(ValueError, match="format"):
        unpack(blob, {**layout, "format": "something-else"})
    with pytest.raises(ValueError, match="layout"):
        unpack(blob, {**layout, "lengths": [2, 2]})


def test_snapshot_of_the_paper_default_model_is_small(one_thread):
    """d_model 128, 2 layers, 1 head, max_len 16, probe_per_len 4: 64 sequences, stored in <= 64 KB."""
    import torch

    from core.ml.train import best_peaky, build_model, snapshot
    from core.problems import build_dataset
    from core.specs.run import RunSpec

    spec = RunSpec.from_flat({"problem": "polynomial", "n_train_per_len": 1, "n_test_per_len": 1})
    assert (spec.model.d_model, spec.model.n_layers, spec.model.n_heads, spec.problem.max_len,
            spec.problem.probe_per_len) == (128, 2, 1, 16, 4)
    data = build_dataset(spec.problem)
    model = build_model(spec, torch.device("cpu"))
    blob, layout, values = snapshot(model, data, spec, torch.device("cpu"))
    assert len(data.probe_tokens) == 64
    assert len(blob) <= 64 * 1024
    assert layout["width"] == 35 and len(layout["lengths"]) == 64
    assert model.training  # snapshot() hands the model back in training mode
    patterns = unpack(blob, layout)
    for i, length in enumerate(layout["lengths"]):
        real = real_width(length)
        np.testing.assert_allclose(patterns[i, :, :, :real, :real].sum(-1), 1.0, atol=2e-2)
    assert set(best_peaky(values)) == {"eoi_locator", "iteration"}
    assert all(0.0 <= v <= 1.0 for k, v in values.items() if "/peaky_" in k)
