"""The trainer: determinism, schedules, batch order, resume, loss targets, failures, transfer, stopping."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.ml import checkpoints
from core.ml.train import TrainingError, batch_rows, build_model, lr_at, qk_scale_at, snapshot, train
from core.names import metric_key, score_key
from core.problems import build_dataset
from core.snapshots import unpack

CPU = torch.device("cpu")


# ------------------------------------------------------------------ pure functions: lr and batches


def schedule(**kw):
    base = dict(lr=1.0, steps=110, warmup_steps=0, schedule="constant", min_lr_ratio=0.0)
    return SimpleNamespace(**{**base, **kw})


def test_lr_constant_with_and_without_warmup():
    assert lr_at(1, schedule(lr=3e-4)) == pytest.approx(3e-4)
    assert lr_at(110, schedule(lr=3e-4)) == pytest.approx(3e-4)
    t = schedule(lr=2.0, warmup_steps=4)
    assert [lr_at(s, t) for s in (1, 2, 3, 4, 5, 100)] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_lr_warmup_then_cosine_to_the_floor():
    t = schedule(lr=1.0, steps=110, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(5, t) == pytest.approx(0.5)
    assert lr_at(10, t) == pytest.approx(1.0)
    # after warmup: progress = (step - 10) / 100
    assert lr_at(11, t) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.01)))
    assert lr_at(60, t) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(85, t) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_at(110, t) == pytest.approx(0.1)
    no_warmup = schedule(lr=2.0, steps=100, schedule="cosine")
    assert lr_at(50, no_warmup) == pytest.approx(1.0)
    assert lr_at(100, no_warmup) == pytest.approx(0.0, abs=1e-12)


def test_qk_scale_is_one_until_the_ramp_then_rises_linearly_and_holds():
    t = SimpleNamespace(qk_scale=5.0, qk_scale_from=10, qk_scale_until=20)
    assert [qk_scale_at(s, t) for s in (0, 1, 10, 11, 15, 20, 21, 1000)] == pytest.approx(
        [1.0, 1.0, 1.0, 1.4, 3.0, 5.0, 5.0, 5.0])
    assert qk_scale_at(500, SimpleNamespace(qk_scale=1.0, qk_scale_from=0, qk_scale_until=0)) == 1.0
    assert qk_scale_at(1, SimpleNamespace(qk_scale=3.0, qk_scale_from=0, qk_scale_until=0)) == 3.0  # a step


def test_paper_order_walks_sorted_rows_and_wraps_at_the_epoch():
    # 10 rows, batches of 4: 2 batches per epoch, the last partial batch dropped
    assert batch_rows(1, 10, 4, shuffle=False, seed=0) == slice(0, 4)
    assert batch_rows(2, 10, 4, shuffle=False, seed=0) == slice(4, 8)
    assert batch_rows(3, 10, 4, shuffle=False, seed=0) == slice(0, 4)
    assert batch_rows(6, 10, 4, shuffle=False, seed=0) == slice(4, 8)
    # a batch larger than the data takes it all
    assert batch_rows(5, 3, 4, shuffle=False, seed=0) == slice(0, 3)


def test_paper_order_on_a_real_dataset_goes_shortest_first(tiny_spec):
    spec = tiny_spec()
    data = build_dataset(spec.problem)
    n = len(data.train_lengths)  # 4 lengths x 32 rows, batches of 16: 8 per epoch, 2 per length
    firsts = [int(data.train_lengths[batch_rows(s, n, 16, shuffle=False, seed=0)][0]) for s in range(1, 10)]
    assert firsts == [1, 1, 2, 2, 3, 3, 4, 4, 1]
    for s in range(1, 9):
        assert len(set(data.train_lengths[batch_rows(s, n, 16, shuffle=False, seed=0)].tolist())) == 1


def test_shuffle_is_a_seeded_permutation_per_epoch():
    n, b = 12, 4
    epoch = lambda e, seed: torch.cat([batch_rows(e * 3 + s, n, b, shuffle=True, seed=seed) for s in (1, 2, 3)])  # noqa: E731
    first, second = epoch(0, 7), epoch(1, 7)
    assert sorted(first.tolist()) == list(range(12))
    assert sorted(second.tolist()) == list(range(12))
    assert not torch.equal(first, second)  # a fresh order each epoch
    assert torch.equal(epoch(0, 7), first)  # a pure function of (seed, step)
    assert not torch.equal(epoch(0, 8), first)
    # with a remainder, an epoch's batches are still disjoint
    rows = torch.cat([batch_rows(s, 10, 4, shuffle=True, seed=0) for s in (1, 2)])
    assert len(set(rows.tolist())) == 8 and max(rows.tolist()) < 10


# ------------------------------------------------------------------ training runs


def test_same_seed_same_run_and_a_different_seed_differs(tiny_spec, recorder, weights_equal):
    spec = tiny_spec(dropout=0.1, shuffle=True)
    a, b = recorder(), recorder()
    ra, rb = train(spec, a), train(spec, b)
    assert ra.steps == rb.steps == 12 and not ra.stopped
    assert weights_equal(a.weights(12), b.weights(12))
    assert ra.final_metrics == rb.final_metrics
    assert a.snapshots[12][0] == b.snapshots[12][0]
    c = recorder()
    rc = train(tiny_spec(dropout=0.1, shuffle=True, seed=1), c)
    assert not weights_equal(a.weights(12), c.weights(12))
    assert rc.final_metrics != ra.final_metrics


def test_what_training_reports(tiny_spec, recorder):
    spec = tiny_spec(steps=12, eval_every=4, snapshot_every=6, checkpoint_every=5, eval_generate=True)
    cb = recorder()
    result = train(spec, cb)
    assert cb.probe is not None and cb.probe[0].shape == (4 * 2, 11)
    assert sorted(cb.snapshots) == [0, 6, 12]
    assert sorted(k for k in cb.checkpoints if k[1] == checkpoints.WEIGHTS) == [(0, "weights"), (6, "weights"), (12, "weights")]
    assert sorted(k for k in cb.checkpoints if k[1] == checkpoints.RESUME) == [(5, "resume"), (10, "resume"), (12, "resume")]
    # each (key, step) is reported once
    seen = set()
    for step, values in cb.metric_calls:
        for key in values:
            assert (key, step) not in seen, (key, step)
            seen.add((key, step))
    steps_with = lambda key: sorted(s for k, s in seen if k == key)  # noqa: E731
    assert steps_with(metric_key("test", "seq_acc")) == [0, 4, 8, 12]
    assert steps_with(metric_key("test", "gen_acc")) == [0, 4, 8, 12]
    assert steps_with(score_key("iteration", "peaky_thres", 1, 0)) == [0, 6, 12]
    assert 12 in steps_with(metric_key("train", "loss"))
    assert 0 not in steps_with(metric_key("train", "loss"))
    assert cb.progress_steps[-1] == 12
    for length in (1, 2, 3, 4):
        assert metric_key("test", "seq_acc", length) in result.final_metrics
        assert score_key("eoi_locator", "mul", 0, 0, length) in result.final_metrics
    assert all(np.isfinite(v) for v in result.final_metrics.values())
    # the final snapshot's patterns score exactly what the final metrics say
    blob, layout = cb.snapshots[12]
    assert unpack(blob, layout).shape == (8, 2, 1, 11, 11)


def test_resume_from_the_middle_is_bitwise_identical(tiny_spec, recorder, weights_equal):
    spec = tiny_spec(steps=12, dropout=0.2, shuffle=True, checkpoint_every=6, eval_every=100, snapshot_every=100)
    whole = recorder()
    train(spec, whole)
    middle = whole.checkpoints[(6, checkpoints.RESUME)]
    resumed = recorder()
    result = train(spec, resumed, resume=middle)
    assert result.steps == 12
    assert resumed.stop_calls == 6  # it trained steps 7..12 only
    assert weights_equal(resumed.weights(12), whole.weights(12))
    state_a = checkpoints.from_bytes(resumed.checkpoints[(12, checkpoints.RESUME)])["optimizer"]["state"]
    state_b = checkpoints.from_bytes(whole.checkpoints[(12, checkpoints.RESUME)])["optimizer"]["state"]
    assert all(torch.equal(state_a[k]["exp_avg"], state_b[k]["exp_avg"]) for k in state_b)
    assert 0 not in resumed.snapshots  # step 0 is not recorded again


def test_a_sharpening_run_saves_plain_weights_and_resumes_mid_ramp_bitwise(tiny_spec, recorder, weights_equal):
    spec = tiny_spec(steps=12, shuffle=True, checkpoint_every=6, eval_every=100, snapshot_every=12,
                     qk_scale=4.0, qk_scale_from=2, qk_scale_until=10)
    whole = recorder()
    train(spec, whole)
    resumed = recorder()
    train(spec, resumed, resume=whole.checkpoints[(6, checkpoints.RESUME)])  # scale 2.5 there
    assert weights_equal(resumed.weights(12), whole.weights(12))
    # the saved weights are folded: a plain model (qk_scale 1) reproduces the final snapshot exactly
    final = checkpoints.from_bytes(whole.checkpoints[(12, checkpoints.RESUME)])
    assert not weights_equal(final["train_model"], final["model"])
    plain = build_model(spec, CPU).eval()
    plain.load_state_dict(whole.weights(12, checkpoints.WEIGHTS))
    assert plain.qk_scale == 1.0
    blob, layout, _ = snapshot(plain, build_dataset(spec.problem), spec, CPU)
    np.testing.assert_allclose(unpack(blob, layout), unpack(*whole.snapshots[12]), atol=2e-3)  # float16


def spy_on_widths(monkeypatch) -> list[int]:
    """Record the width of every training-mode forward pass of the models train() builds."""
    import core.ml.train as train_mod

    widths: list[int] = []
    real_build = train_mod.build_model

    def spying_build(spec, device):
        model = real_build(spec, device)
        model.register_forward_pre_hook(
            lambda module, args: widths.append(args[0].shape[1]) if module.training else None)
        return model

    monkeypatch.setattr(train_mod, "build_model", spying_build)
    return widths


def test_loss_on_cot_trims_the_width_and_still_trains(tiny_spec, recorder, monkeypatch):
    spec = tiny_spec(loss_on="cot", steps=48, eval_every=8, snapshot_every=1000, lr=3e-3)
    widths = spy_on_widths(monkeypatch)
    cb = recorder()
    train(spec, cb)
    # batches walk one length at a time (2 batches per length): a length-L batch feeds 2L + 2 positions
    assert widths[:8] == [4, 4, 6, 6, 8, 8, 10, 10]
    assert max(widths) == 10  # the full width 11 minus the last target
    losses = {step: values[metric_key("train", "loss")] for step, values in cb.metric_calls
              if metric_key("train", "loss") in values}
    assert {8, 48} <= set(losses) and all(np.isfinite(list(losses.values())))
    assert losses[48] < 0.6 * losses[8]


def test_loss_on_all_keeps_the_full_width(tiny_spec, monkeypatch):
    widths = spy_on_widths(monkeypatch)
    train(tiny_spec(steps=4, eval_every=100, snapshot_every=100))
    assert widths == [10, 10, 10, 10]


def test_a_nan_loss_raises_training_error(tiny_spec):
    spec = tiny_spec()
    poisoned = build_model(spec, CPU).state_dict()
    poisoned["unembed.weight"] = torch.full_like(poisoned["unembed.weight"], float("nan"))
    with pytest.raises(TrainingError, match="step 1"):
        train(spec, init_weights=poisoned)


def test_trainable_mlp2_changes_only_the_second_mlp(tiny_spec, recorder):
    spec = tiny_spec(trainable="mlp2", steps=6)
    cb = recorder()
    train(spec, cb)
    before, after = cb.weights(0, checkpoints.WEIGHTS), cb.weights(6)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"blocks.1.mlp.fc_in.weight", "blocks.1.mlp.fc_out.weight"}


def test_trainable_list_and_frozen_positions(tiny_spec, recorder):
    cb = recorder()
    train(tiny_spec(trainable="unembed,blocks.0.ln1", steps=4, pos_encoding="frozen"), cb)
    before, after = cb.weights(0, checkpoints.WEIGHTS), cb.weights(4)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"unembed.weight", "blocks.0.ln1.weight"}
    cb = recorder()
    train(tiny_spec(steps=4, pos_encoding="frozen"), cb)
    before, after = cb.weights(0, checkpoints.WEIGHTS), cb.weights(4)
    assert torch.equal(before["pos_embed.weight"], after["pos_embed.weight"])
    assert not torch.equal(before["embed.weight"], after["embed.weight"])


def test_init_weights_are_loaded(tiny_spec, recorder, weights_equal):
    parent = build_model(tiny_spec(seed=5), CPU).state_dict()
    own = build_model(tiny_spec(), CPU).state_dict()
    assert not weights_equal(parent, own)
    cb = recorder()
    train(tiny_spec(steps=2), cb, init_weights=parent)
    assert weights_equal(cb.weights(0, checkpoints.WEIGHTS), parent)
    assert not weights_equal(cb.weights(2), parent)


def test_should_stop_stops_early(tiny_spec, recorder, weights_equal):
    cb = recorder(stop_after=5)
    result = train(tiny_spec(), cb)
    assert result.stopped and result.steps == 5
    assert (5, checkpoints.RESUME) in cb.checkpoints  # where a resume picks up
    assert 12 not in cb.snapshots
    assert checkpoints.from_bytes(cb.checkpoints[(5, checkpoints.RESUME)])["step"] == 5
    # the steps since the last report (an evaluation at step 0; 6 is the next) are recorded, not lost
    assert [step for step, values in cb.metric_calls if "train/loss" in values][-1] == 5 and cb.progress_steps[-1] == 5
    # stopping then resuming ends where an uninterrupted run ends
    rest = recorder()
    train(tiny_spec(), rest, resume=cb.checkpoints[(5, checkpoints.RESUME)])
    whole = recorder()
    train(tiny_spec(), whole)
    assert weights_equal(rest.weights(12), whole.weights(12))



@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the error path needs one without")
def test_a_cuda_device_without_cuda_is_a_clear_error():
    from core.ml.train import resolve_device

    with pytest.raises(TrainingError, match="CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device(None).type == "cpu"
