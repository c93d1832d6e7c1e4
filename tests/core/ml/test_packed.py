"""Packed training against the solo trainer, its reference: the same start, batches, dropout masks,
steps and records, no cross-talk between members, and members that stop, fail or resume alone.

Everything runs in fp32 on the CPU with the tiny specs of conftest.py. "Solo" below is the solo
trainer itself (``train``) or its loop rebuilt from its own functions (``solo_steps``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.ml import checkpoints
from core.ml.model import ModelConfig, Transformer
from core.ml.packed import PackedTransformer
from core.ml.packed_step import PackedAdam, PackedStep, member_losses, set_tf32
from core.ml.packed_train import Pack, PackCallbacks, PackError, group_packs, member_from_spec, train_pack
from core.ml.train import (
    TrainingError, TrainResult, batch_rows, build_model, lr_at, make_optimizer, qk_scale_at, select_trainable,
    train, train_step,
)
from core.problems import build_dataset, supervised_mask

CPU = torch.device("cpu")
TOL = 1e-5

# members that differ in everything that leaves shapes alone
VARIED = [
    {"seed": 0},
    {"seed": 1, "lr": 3e-3, "dropout": 0.2, "loss_on": "cot", "shuffle": True},
    {"seed": 2, "data_seed": 5, "weight_decay": 0.1, "warmup_steps": 3, "schedule": "cosine", "min_lr_ratio": 0.1},
    {"seed": 3, "optimizer": "adamw", "weight_decay": 0.05, "dropout": 0.1, "qk_scale": 3.0, "qk_scale_from": 2,
     "qk_scale_until": 8},
    {"seed": 4, "trainable": "mlp2", "lr": 5e-3},
]


def solo_steps(spec, n: int):
    """The solo trainer's loop (core/ml/train.py) for n steps: (model, per-step losses)."""
    t = spec.train
    data = build_dataset(spec.problem)
    model = build_model(spec, CPU)
    optimizer = make_optimizer(select_trainable(model, t.trainable_modules), t)
    tokens = torch.from_numpy(data.train_tokens).long()
    mask = torch.from_numpy(supervised_mask(data.train_lengths, data.width, t.loss_on))
    lengths = torch.from_numpy(data.train_lengths.astype(np.int64))
    model.train()
    losses = []
    for step in range(1, n + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, t)
        model.qk_scale = qk_scale_at(step, t)
        rows = batch_rows(step, len(tokens), t.batch_size, shuffle=t.shuffle, seed=t.seed)
        losses.append(train_step(model, optimizer, tokens[rows], mask[rows], lengths[rows], loss_on=t.loss_on).item())
    return model, losses


def make_pack(specs, attention: str = "fused") -> Pack:
    return Pack([member_from_spec(spec, index=i) for i, spec in enumerate(specs)], attention=attention)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def final_model(recorder, result: TrainResult) -> dict[str, torch.Tensor]:
    return recorder.weights(result.steps)


# ------------------------------------------------------------------------------ start and batches


def test_members_start_from_their_solo_weights_and_see_their_solo_batches_and_masks_bit_for_bit(tiny_spec):
    specs = [tiny_spec(**kw) for kw in VARIED]
    pack = make_pack(specs)
    for i, spec in enumerate(specs):
        solo = build_model(spec, CPU)  # seeds the global generator: the solo run's dropout stream follows
        assert all(torch.equal(v, solo.state_dict()[k]) for k, v in pack.packed.member_state_dict(i).items())
    data = [build_dataset(s.problem) for s in specs]
    streams = []
    for spec in specs:
        build_model(spec, CPU)
        streams.append(torch.get_rng_state())
    for step in range(1, 5):
        for m in pack.members:
            m.step = step
        tokens, mask, scale, first = pack.batch()
        for i, (spec, d) in enumerate(zip(specs, data)):
            t = spec.train
            rows = batch_rows(step, len(d.train_tokens), t.batch_size, shuffle=t.shuffle, seed=t.seed)
            solo_tokens = torch.from_numpy(d.train_tokens).long()[rows]
            solo_mask = torch.from_numpy(supervised_mask(d.train_lengths, d.width, t.loss_on))[rows]
            w = solo_tokens.shape[1] if t.loss_on == "all" else 2 * int(d.train_lengths[rows].max()) + 3
            assert torch.equal(tokens[i, :, :w], solo_tokens[:, :w])
            assert torch.equal(mask[i, :, :w - 1], solo_mask[:, :w - 1])
            assert not mask[i, :, w - 1:].any()
            assert first <= int(d.train_lengths[rows].min()) + 1
            p = spec.model.dropout
            if p > 0:  # the draw the solo EmbeddingDropout makes from the solo run's global generator
                torch.set_rng_state(streams[i])
                h = torch.zeros(t.batch_size, w - 1, spec.model.d_model)
                solo_scale = (torch.rand_like(h) >= p).to(h.dtype).mul_(1.0 / (1.0 - p))
                streams[i] = torch.get_rng_state()
                assert torch.equal(scale[i, :, :w - 1], solo_scale)
                assert torch.equal(scale[i, :, w - 1:], torch.ones_like(scale[i, :, w - 1:]))
            elif scale is not None:
                assert torch.equal(scale[i], torch.ones_like(scale[i]))


# ------------------------------------------------------------------ 1 and 10 steps, then a curve


@pytest.mark.parametrize("n", [1, 10])
def test_after_n_steps_logits_gradients_and_parameters_equal_solo(tiny_spec, n):
    specs = [tiny_spec(**kw) for kw in VARIED]
    pack = make_pack(specs)
    for _ in range(n):
        pack.tick()
    probe = torch.from_numpy(build_dataset(specs[0].problem).test_tokens[:8, :-1]).long()  # [8, W-1]
    with torch.no_grad():
        logits = pack.packed(probe.expand(len(specs), -1, -1))  # [M, 8, W-1, V], qk_scale at step n
    for i, spec in enumerate(specs):
        solo, _ = solo_steps(spec, n)
        assert max_diff(pack.packed.member_state_dict(i), solo.state_dict()) < TOL
        grads = {name: pack.packed.params[name].grad[i] for name, p in solo.named_parameters() if p.grad is not None}
        assert grads, "every member trains something"
        assert max_diff(grads, {name: p.grad for name, p in solo.named_parameters() if p.grad is not None}) < TOL
        solo.eval()  # qk_scale at step n, as solo_steps left it
        with torch.no_grad():
            assert float((logits[i] - solo(probe)).abs().max()) < TOL


@pytest.mark.parametrize("attention", ["fused", "explicit"])
def test_a_300_step_loss_curve_matches_solo_far_inside_the_spread_between_seeds(tiny_spec, attention):
    specs = [tiny_spec(seed=s, steps=300, dropout=0.1, lr=3e-3) for s in (0, 1)]
    pack = make_pack(specs, attention)
    packed_losses = torch.stack([pack.tick() for _ in range(300)])  # [300, 2]
    solo = [solo_steps(spec, 300)[1] for spec in specs]
    spread = float(np.mean(np.abs(np.subtract(solo[0], solo[1]))))
    for i in range(2):
        gap = float(np.max(np.abs(packed_losses[:, i].numpy() - np.array(solo[i]))))
        assert gap < spread / 100, (gap, spread)


def test_explicit_attention_gives_the_solo_first_step_gradients(tiny_spec):
    """The faster CPU attention: the same gradients from the same start (its parameters then drift
    from solo by Adam-magnified rounding, which the loss-curve test bounds)."""
    specs = [tiny_spec(**kw) for kw in VARIED]
    pack = make_pack(specs, "explicit")
    pack.tick()
    for i, spec in enumerate(specs):
        solo, _ = solo_steps(spec, 1)
        solo_grads = {name: p.grad for name, p in solo.named_parameters() if p.grad is not None}
        assert max_diff({name: pack.packed.params[name].grad[i] for name in solo_grads}, solo_grads) < TOL


# -------------------------------------------------------------------------------------- no cross-talk


def test_no_cross_talk_gradients_are_exactly_zero_and_outputs_bit_identical(tiny_spec):
    specs = [tiny_spec(seed=s) for s in range(3)]
    pack = make_pack(specs)
    for m in pack.members:
        m.step = 1
    tokens, mask, _, first = pack.batch()
    logits = pack.packed(tokens[:, :, :-1], first_output=first)
    losses = member_losses(logits, tokens[:, :, 1 + first:], mask[:, :, first:])
    params = list(pack.packed.params.values())
    grads = torch.autograd.grad(losses[0], params)
    for g in grads:
        assert torch.count_nonzero(g[1:]) == 0
    assert sum(torch.count_nonzero(g[0]) for g in grads) > 0
    with torch.no_grad():
        before = pack.packed(tokens[:, :, :-1])
        pack.packed.flat[2] += torch.randn_like(pack.packed.flat[2])
        after = pack.packed(tokens[:, :, :-1])
    assert torch.equal(before[:2], after[:2])
    assert not torch.equal(before[2], after[2])


# ------------------------------------------------------------------------- pack size and member order


def test_pack_size_1_and_8_and_a_permuted_order_give_the_same_members(tiny_spec, recorder):
    specs = [tiny_spec(seed=s, lr=1e-2 * (1 + s % 3) / 3, eval_every=100, snapshot_every=100) for s in range(8)]
    def run(order):
        recs = [recorder() for _ in order]
        results = train_pack([specs[i] for i in order], recs)
        return {i: final_model(rec, res) for i, rec, res in zip(order, recs, results)}
    eight, permuted, alone = run(range(8)), run([5, 2, 7, 0, 3, 6, 1, 4]), run([3])
    for i in range(8):
        assert max_diff(eight[i], permuted[i]) < 1e-6
    assert max_diff(eight[3], alone[3]) < 1e-6


# ------------------------------------------------------------- whole runs: records as the solo trainer


def test_varied_members_each_record_what_their_solo_run_records(tiny_spec, recorder):
    parent = build_model(tiny_spec(seed=9), CPU).state_dict()
    specs = [tiny_spec(**kw) for kw in VARIED]
    inits = [parent if kw.get("trainable") else None for kw in VARIED]
    solo = []
    for spec, init in zip(specs, inits):
        rec = recorder()
        solo.append((rec, train(spec, rec, init_weights=init)))
    recs = [recorder() for _ in specs]
    results = train_pack(specs, recs, init_weights=inits)
    for (solo_rec, solo_res), rec, res in zip(solo, recs, results):
        assert isinstance(res, TrainResult) and res.steps == solo_res.steps and not res.stopped
        assert sorted(rec.checkpoints) == sorted(solo_rec.checkpoints)
        assert sorted(rec.snapshots) == sorted(solo_rec.snapshots)
        for key in rec.checkpoints:
            assert max_diff(rec.weights(*key), solo_rec.weights(*key)) < TOL
        recorded = {(step, k): v for step, values in rec.metric_calls for k, v in values.items()}
        expected = {(step, k): v for step, values in solo_rec.metric_calls for k, v in values.items()}
        evaluated = {k for k in expected if k[1] not in ("train/loss", "train/lr")}  # those two come once a second
        assert evaluated <= recorded.keys()
        assert all(abs(recorded[k] - expected[k]) < 1e-4 for k in evaluated)
        assert res.final_metrics.keys() == solo_res.final_metrics.keys()
        assert np.array_equal(rec.probe[0], solo_rec.probe[0])
    frozen = results[4]
    assert isinstance(frozen, TrainResult)
    final = recs[4].weights(frozen.steps)
    assert torch.equal(final["embed.weight"], parent["embed.weight"])  # trainable=mlp2 leaves the rest alone


def test_pack_callbacks_receive_each_members_solo_model_at_its_record_steps(tiny_spec, recorder):
    class Seen(PackCallbacks):
        def __init__(self):
            self.models, self.weights = {}, {}

        def model(self, step, model):
            self.models[step] = {k: v.clone() for k, v in model.folded_state_dict().items()}
            assert isinstance(model, Transformer)

        def checkpoint(self, step, kind, data):
            if kind == checkpoints.WEIGHTS:
                self.weights[step] = checkpoints.from_bytes(data)["model"]

    seen = [Seen(), Seen()]
    train_pack([tiny_spec(seed=0), tiny_spec(seed=1)], seen)
    for s in seen:
        assert sorted(s.models) == [0, 6, 12]
        assert all(max_diff(s.models[step], s.weights[step]) == 0 for step in s.models)
    assert max_diff(seen[0].models[12], seen[1].models[12]) > 0


# --------------------------------------------------------------------- stop, fail and resume alone


def test_a_member_stops_alone_and_resumes_in_another_pack_where_the_uninterrupted_run_ends(tiny_spec, recorder):
    specs = [tiny_spec(seed=0, dropout=0.1, shuffle=True), tiny_spec(seed=1)]
    whole = [recorder(), recorder()]
    full = train_pack(specs, whole)
    cut = [recorder(stop_after=5), recorder()]
    first = train_pack(specs, cut)
    assert first[0].stopped and first[0].steps == 5 and not first[1].stopped
    assert [step for step, values in cut[0].metric_calls if "train/loss" in values][-1] == 5  # its last steps' loss
    assert cut[0].progress_steps[-1] == 5
    assert max_diff(final_model(cut[1], first[1]), final_model(whole[1], full[1])) < 1e-6  # the other went on
    resumed = [recorder(), recorder()]
    checkpoint = cut[0].checkpoints[(5, checkpoints.RESUME)]
    second = train_pack([specs[0], tiny_spec(seed=7)], resumed, resumes=[checkpoint, None])
    assert second[0].steps == 12
    assert max_diff(final_model(resumed[0], second[0]), final_model(whole[0], full[0])) < 1e-6
    solo = recorder()  # a packed member's checkpoint is a solo resume checkpoint
    train(specs[0], solo, resume=checkpoint)
    assert max_diff(solo.weights(12), final_model(whole[0], full[0])) < TOL


def test_a_member_whose_loss_is_not_finite_fails_alone(tiny_spec, recorder):
    specs = [tiny_spec(seed=0), tiny_spec(seed=1)]
    broken = build_model(specs[1], CPU).state_dict()
    broken["unembed.weight"][0, 0] = float("nan")
    recs = [recorder(), recorder()]
    results = train_pack(specs, recs, init_weights=[None, broken])
    assert isinstance(results[1], TrainingError) and "step 1" in str(results[1])
    solo = recorder()
    train(specs[0], solo)
    assert max_diff(final_model(recs[0], results[0]), solo.weights(12)) < TOL


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("other, field", [({"d_model": 32}, "d_model"), ({"batch_size": 8}, "batch_size"),
                                          ({"max_len": 3}, "n_ctx"), ({"n_layers": 1}, "n_layers")])
def test_specs_of_different_shapes_cannot_share_a_pack_and_the_error_names_the_field(tiny_spec, other, field):
    with pytest.raises(PackError, match=field):
        train_pack([tiny_spec(), tiny_spec(**other)])


def test_runs_are_grouped_into_packs_of_one_shape_in_order(tiny_spec):
    specs = [tiny_spec(seed=0), tiny_spec(d_model=32), tiny_spec(seed=1, lr=1e-3), tiny_spec(seed=2, dropout=0.3),
             tiny_spec(d_model=32, seed=5), tiny_spec(batch_size=8)]
    assert group_packs(specs, 2) == [[0, 2], [3], [1, 4], [5]]
    assert group_packs(specs, 8) == [[0, 2, 3], [1, 4], [5]]
    with pytest.raises(PackError, match="pack_size"):
        group_packs(specs, 0)


def test_bad_pack_arguments_are_clear_errors(tiny_spec):
    with pytest.raises(PackError, match="at least one"):
        train_pack([])
    with pytest.raises(PackError, match="one entry per spec"):
        train_pack([tiny_spec(), tiny_spec(seed=1)], resumes=[None])
    wrong = build_model(tiny_spec(d_model=32), CPU).state_dict()
    with pytest.raises(TrainingError, match="init_from"):
        train_pack([tiny_spec()], init_weights=[wrong])


# --------------------------------------------------------------------------- the pieces on their own


def test_packed_adam_equals_torch_adam_and_adamw_and_leaves_frozen_entries_alone():
    cfg = ModelConfig(d_model=8, d_mlp=16, n_ctx=7, dropout=0.0)
    solos = []
    for seed in range(3):
        torch.manual_seed(seed)
        solos.append(Transformer(cfg))
    packed = PackedTransformer.from_models(solos)
    frozen = packed.columns["unembed.weight"]
    trains = torch.ones_like(packed.flat, dtype=torch.bool)
    trains[2, frozen] = False
    decays, decoupled, lrs = [0.0, 0.1, 0.05], [False, False, True], [1e-2, 3e-3, 1e-3]
    adam = PackedAdam(packed, trains, decays, decoupled, [0, 0, 0])
    optimizers = []
    for i, model in enumerate(solos):
        params = [p for name, p in model.named_parameters() if not (i == 2 and name == "unembed.weight")]
        cls = torch.optim.AdamW if decoupled[i] else torch.optim.Adam
        optimizers.append(cls(params, lr=lrs[i], weight_decay=decays[i]))
    start = packed.flat[2, frozen].clone()
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        grad = torch.randn(packed.flat.shape, generator=generator)
        packed.flat_grad.copy_(grad)
        for i, (model, opt) in enumerate(zip(solos, optimizers)):
            for name, p in model.named_parameters():
                p.grad = grad[i, packed.columns[name]].view_as(p).clone()
            opt.step()
        adam.set_lr(lrs)
        adam.step()
    for i, model in enumerate(solos):
        assert max_diff(packed.member_state_dict(i), model.state_dict()) < 1e-6  # a few float32 roundings
    assert torch.equal(packed.flat[2, frozen], start)
    assert torch.count_nonzero(adam.exp_avg[2, frozen]) == 0


@pytest.mark.parametrize("attention", ["fused", "explicit"])
def test_the_packed_model_is_the_solo_model_member_by_member(attention):
    for kw in ({}, {"norm": "pre", "bias": True, "pos_encoding": "rope", "n_heads": 2}, {"pos_encoding": "none"}):
        cfg = ModelConfig(d_model=16, d_mlp=24, n_ctx=11, dropout=0.0, **kw)
        solos = []
        for seed in range(3):
            torch.manual_seed(seed)
            solos.append(Transformer(cfg))
        packed = PackedTransformer.from_models(solos, attention=attention)
        tokens = torch.randint(0, cfg.d_vocab, (3, 5, 10))
        with torch.no_grad():
            for first in (0, 4):
                out = packed(tokens, first_output=first)
                for i, solo in enumerate(solos):
                    assert float((out[i] - solo(tokens[i], first_output=first)).abs().max()) < 1e-6


def test_a_pack_refuses_mixed_shapes_moves_and_foreign_state_dicts():
    a = Transformer(ModelConfig(d_model=8, d_mlp=16, n_ctx=7))
    b = Transformer(ModelConfig(d_model=16, d_mlp=16, n_ctx=7))
    with pytest.raises(ValueError, match="one model shape"):
        PackedTransformer.from_models([a, b])
    packed = PackedTransformer.from_models([a, Transformer(ModelConfig(d_model=8, d_mlp=16, n_ctx=7, dropout=0.3))])
    with pytest.raises(NotImplementedError, match="build it on its device"):
        packed.to("cpu")
    with pytest.raises(ValueError, match="missing"):
        packed.load_member(0, {k: v for k, v in a.state_dict().items() if k != "embed.weight"})
    with pytest.raises(ValueError, match="attention"):
        PackedTransformer.from_models([a], attention="flash")


def test_the_gpu_options_have_a_cpu_path_that_changes_nothing(tiny_spec, recorder):
    before = torch.get_float32_matmul_precision()
    assert set_tf32(True) == before and torch.get_float32_matmul_precision() == "high"
    set_tf32(False)
    assert torch.get_float32_matmul_precision() == "highest"
    torch.set_float32_matmul_precision(before)
    specs = [tiny_spec(seed=0), tiny_spec(seed=1, dropout=0.1)]
    plain, options = [recorder(), recorder()], [recorder(), recorder()]
    train_pack(specs, plain)
    train_pack(specs, options, cuda_graphs=True, tf32=True)
    assert torch.get_float32_matmul_precision() == before
    for a, b in zip(plain, options):
        assert max_diff(a.weights(12), b.weights(12)) == 0
    pack = make_pack(specs)
    assert not PackedStep(pack.packed, pack.adam, cuda_graphs=True).cuda_graphs  # graphs are CUDA only
