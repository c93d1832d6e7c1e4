"""Interventions: identity ones change nothing, each family does what it says, hooks never leak."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.ml import interventions as iv
from core.ml.evaluate import teacher_forced
from core.ml.hooks import active, hooks, run_with_cache
from core.ml.model import ModelConfig, Transformer
from core.problems import build_dataset, eoi_position

CPU = torch.device("cpu")


@pytest.fixture
def setup(tiny_spec):
    spec = tiny_spec(n_heads=2)
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_spec(spec)).eval()
    return spec, model, build_dataset(spec.problem)


def rows_of(data, length: int) -> torch.Tensor:
    tokens, lengths = data.split("test")
    return torch.from_numpy(tokens[lengths == length][:, :-1].astype(np.int64))  # [n, W-1]


def run(model, fn, length: int, inputs: torch.Tensor, names=()):
    with hooks(model, fn(length, inputs)):
        return run_with_cache(model, inputs, names)


def test_identity_interventions_change_nothing(setup):
    spec, model, data = setup
    inputs = rows_of(data, 4)
    plain = model(inputs)
    for fn in (iv.patch_from_model(model, model, [(0, 0), (1, 1)]), iv.zero_edge(model, [], "iteration", renorm=True),
               iv.combine()):
        logits, _ = run(model, fn, 4, inputs)
        assert torch.allclose(logits, plain, atol=1e-6)
    tokens, lengths = data.split("test")
    base = teacher_forced(model, tokens, lengths, loss_on="all", device=CPU)
    same = teacher_forced(model, tokens, lengths, loss_on="all", device=CPU,
                          hooks_for=iv.patch_from_model(model, model, [(1, 0)]))
    assert same.seq_correct == base.seq_correct and same.tok_correct == base.tok_correct


def test_resample_from_identical_rows_is_the_identity(setup):
    _, model, data = setup
    inputs = rows_of(data, 3)[:1].repeat(5, 1)  # five copies of one row
    logits, _ = run(model, iv.ablate(model, [(0, 1)], "resample", seed=1), 3, inputs)
    assert torch.allclose(logits, model(inputs), atol=1e-6)


def test_zero_and_mean_ablation_set_the_head_output(setup):
    _, model, data = setup
    inputs = rows_of(data, 4)
    z = "blocks.0.attn.hook_z"
    _, cache = run(model, iv.ablate(model, [(0, 1)], "zero"), 4, inputs, [z])
    assert torch.all(cache[z][:, :, 1] == 0) and torch.any(cache[z][:, :, 0] != 0)
    fn = iv.ablate(model, [(0, 1)], "mean", probe_tokens=data.probe_tokens, probe_lengths=data.probe_lengths)
    _, cache = run(model, fn, 4, inputs, [z])
    _, probe = run_with_cache(model, torch.from_numpy(data.probe_tokens[data.probe_lengths == 4][:, :-1].astype(np.int64)), [z])
    expected = probe[z][:, :, 1].mean(dim=0)  # [T, d_head]
    assert torch.allclose(cache[z][:, :, 1], expected.expand_as(cache[z][:, :, 1]), atol=1e-6)
    assert not torch.allclose(model(inputs), run(model, iv.ablate(model, [(0, 1)], "zero"), 4, inputs)[0])


@pytest.mark.parametrize("renorm", [True, False])
def test_edge_zeroing_removes_the_edge(setup, renorm):
    _, model, data = setup
    inputs, length = rows_of(data, 4), 4
    name = "blocks.1.attn.hook_pattern"
    _, before = run_with_cache(model, inputs, [name])
    _, after = run(model, iv.zero_edge(model, [(1, 0)], "iteration", renorm=renorm), length, inputs, [name])
    e = eoi_position(length)
    queries, keys = np.arange(e, e + length), np.arange(1, length + 1)
    assert torch.all(after[name][:, 0, queries, keys] == 0)
    sums = after[name][:, 0, queries].sum(dim=-1)  # [n, L]
    lost = before[name][:, 0, queries, keys]
    assert torch.allclose(sums, torch.ones_like(sums) if renorm else 1 - lost, atol=1e-5)
    assert torch.equal(after[name][:, 1], before[name][:, 1])  # the other head is untouched


def test_ideal_pattern_patching_by_hand(tiny_spec):
    """One layer: with a one-hot pattern row, the head's output at query q is exactly its value at the key."""
    spec = tiny_spec(n_layers=1, n_heads=2, norm="pre")
    torch.manual_seed(1)
    model = Transformer(ModelConfig.from_spec(spec)).eval()
    inputs = rows_of(build_dataset(spec.problem), 4)
    length, e = 4, eoi_position(4)
    names = ["blocks.0.attn.hook_z", "blocks.0.attn.hook_v", "blocks.0.attn.hook_pattern"]
    for shift in (0, -2):
        _, cache = run(model, iv.patch_ideal(model, [(0, 1, "eoi_locator")], shift=shift), length, inputs, names)
        z, v, pattern = (cache[n] for n in names)
        for t in range(1, length + 1):
            q, k = e + t, e + shift
            assert torch.all(pattern[:, 1, q].sum(dim=-1) == 1) and torch.all(pattern[:, 1, q, k] == 1)
            assert torch.allclose(z[:, q, 1], v[:, k, 1], atol=1e-6)  # z = sum_k pattern[q, k] v[k]
        _, plain = run_with_cache(model, inputs, [names[0]])
        assert torch.allclose(z[:, :, 0], plain[names[0]][:, :, 0], atol=1e-6)  # head 0 untouched


def test_hooks_are_removed_even_when_a_hook_raises(setup):
    _, model, data = setup
    tokens, lengths = data.split("test")
    teacher_forced(model, tokens, lengths, loss_on="all", device=CPU, hooks_for=iv.ablate(model, [(1, 0)], "zero"))
    assert not active(model)

    def broken(length, inputs):
        def fail(x, name):
            raise RuntimeError("boom")
        return [("blocks.0.hook_resid_pre", fail)]

    with pytest.raises(RuntimeError, match="boom"):
        teacher_forced(model, tokens, lengths, loss_on="all", device=CPU, hooks_for=broken)
    assert not active(model)


def test_bad_heads_are_refused(setup):
    _, model, _ = setup
    with pytest.raises(ValueError, match="no head L2H0"):
        iv.zero_edge(model, [(2, 0)], "eoi_locator", renorm=False)
    with pytest.raises(ValueError, match="unknown ablation"):
        iv.ablate(model, [(0, 0)], "scramble")


class ShiftedOracle(torch.nn.Module):
    """Predicts y_t as step(y_{t-1}, x_{t+2}) wherever x_{t+2} exists: the failure diagnose must name."""

    def __init__(self, length: int, step) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.length, self.step = length, step

    def forward(self, inputs):
        tokens = inputs.numpy()
        logits = torch.zeros(*inputs.shape, 64)
        e = self.length + 1
        for t in range(2, self.length - 1):
            guess = self.step(tokens[:, e + t - 1], tokens[:, t + 2])
            logits[torch.arange(len(tokens)), e + t - 1, torch.from_numpy(guess.astype(np.int64))] = 1.0
        return logits


def test_diagnose_names_the_input_a_failure_follows(tiny_spec):
    from core.causal.jobs import one_step

    spec = tiny_spec(problem="polynomial", max_len=8, n_test_per_len=32)
    tokens, lengths = build_dataset(spec.problem).split("test")
    rows = tokens[lengths == 8]
    step = one_step("polynomial")
    out = iv.diagnose(ShiftedOracle(8, step), rows, 8, step)
    assert out["follows"]["2"] == 1.0  # over the t that have an x_{t+2}: t = 2..6
    assert out["follows"]["0"] < 0.3 and len(out["by_t"]) == 8
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_spec(spec)).eval()
    plain = iv.diagnose(model, rows, 8, step)
    assert plain["follows"]["0"] == pytest.approx(np.mean(plain["by_t"][1:]))  # k = 0 is being right
