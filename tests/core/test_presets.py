"""Presets: the paper's setting pinned value by value (docs/paper.md), and every preset valid."""

import pytest

from core.presets import PRESET_TITLES, PRESETS, get_preset, preset_spec
from core.specs.budget import estimate_budget
from core.specs.errors import SpecError

PAPER = {
    "paper-polynomial": "polynomial",
    "paper-parity": "parity",
    "paper-binary-copy": "binary_copy",
}


@pytest.mark.parametrize(("name", "problem"), PAPER.items())
def test_paper_presets_are_the_papers_setting(name, problem):
    spec = preset_spec(name)
    p, m, t = spec.problem, spec.model, spec.train
    # data: lengths 1..16, 1024 + 1024 per length, test lengths equal train lengths, width 35
    assert (p.problem, p.min_len, p.max_len, p.test_max_len) == (problem, 1, 16, None)
    assert (p.n_train_per_len, p.n_test_per_len) == (1024, 1024)
    assert spec.n_ctx == 35
    # model: 2 layers, 1 head, d_model 128, MLP 4x, learned positions, the norm quirk, no biases
    assert (m.n_layers, m.n_heads, m.d_model, m.d_mlp) == (2, 1, 128, 512)
    assert (m.pos_encoding, m.norm, m.bias, m.dropout) == ("learned", "paper", False, 0.1)
    assert estimate_budget(spec).n_params == 414_720
    # training: Adam, lr 3e-4 constant, no weight decay, batch 256 unshuffled, loss on all targets
    assert (t.optimizer, t.lr, t.weight_decay, t.schedule, t.warmup_steps) == ("adam", 3e-4, 0.0, "constant", 0)
    assert (t.batch_size, t.shuffle, t.loss_on) == (256, False, "all")
    # 1000 epochs of 64 steps; evaluate every 10 epochs, as the authors log
    steps_per_epoch = 16 * 1024 // 256
    assert steps_per_epoch == 64
    assert t.steps == 1000 * steps_per_epoch == 64_000
    assert t.eval_every == t.snapshot_every == 10 * steps_per_epoch
    assert t.checkpoint_every == 6400
    assert (t.init_from, t.trainable) == (None, "all")


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_write_every_paper_value_out(name):
    """A changed default must not change the paper's setting."""
    pinned = {"problem", "min_len", "max_len", "test_max_len", "n_train_per_len", "n_test_per_len",
              "n_layers", "n_heads", "d_model", "d_mlp", "pos_encoding", "norm", "bias", "dropout",
              "pos_init_std", "optimizer", "weight_decay", "lr", "schedule", "warmup_steps", "batch_size", "shuffle",
              "loss_on", "steps", "eval_every", "snapshot_every", "checkpoint_every"}
    assert pinned <= set(get_preset(name))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates_and_has_a_title(name):
    spec = preset_spec(name)
    assert spec.problem.problem == name.split("-", 1)[1].removesuffix("-transfer").replace("-", "_")
    assert PRESET_TITLES[name]
    assert set(PRESET_TITLES) == set(PRESETS)


@pytest.mark.parametrize("name", ["fast-polynomial", "fast-parity"])
def test_fast_presets_are_faster_than_the_paper(name):
    fast = estimate_budget(preset_spec(name)).est_seconds_cpu
    paper = estimate_budget(preset_spec(name.replace("fast", "paper"))).est_seconds_cpu
    assert fast < paper / 10


def test_overrides_apply_over_a_preset():
    spec = preset_spec("paper-parity", {"seed": 3, "d_model": 64})
    assert (spec.train.seed, spec.model.d_model, spec.model.d_mlp) == (3, 64, 256)  # d_mlp follows d_model


def test_get_preset_returns_a_copy():
    get_preset("paper-parity")["lr"] = 1.0
    assert get_preset("paper-parity")["lr"] == 3e-4


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SpecError) as caught:
        get_preset("paper-addition")
    message = str(caught.value)
    assert message.startswith("preset: unknown preset 'paper-addition'")
    assert all(name in message for name in PRESETS)


def test_bad_override_on_a_preset_is_a_spec_error():
    with pytest.raises(SpecError, match=r"^d_model: must be <= 2048 \(got 65536\)$"):
        preset_spec("fast-polynomial", {"d_model": 65536})


def test_the_transfer_preset_is_fast_parity_with_a_finer_grid_and_takes_a_parent():
    transfer, parity = get_preset("fast-parity-transfer"), get_preset("fast-parity")
    assert {k: v for k, v in transfer.items() if parity.get(k) != v} == {"steps": 1500, "eval_every": 100}
    spec = preset_spec("fast-parity-transfer", {"init_from": "1@3000", "trainable": "mlp2"})
    assert spec.train.init_source == (1, 3000) and spec.train.trainable_modules == ("blocks.1.mlp",)
    frozen_positions = preset_spec("fast-parity-transfer", {"trainable": "embed,blocks,ln_final,unembed"})
    assert "pos_embed" not in frozen_positions.train.trainable_modules
