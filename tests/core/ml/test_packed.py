"""Packed training against the solo reference: same start, same steps, no cross-talk (fp32, CPU).

Each solo run here is the trainer's own pieces (``build_model``, ``make_optimizer``, ``batch_rows``,
``train_step``) on a tiny spec; its packed twin is a member of a :class:`Pack` fed the same batches.
"""

from __future__ import annotations

import pytest
import torch

from core.ml.packed import Pack
from core.ml.train import batch_rows, build_model, make_optimizer, train_step
from core.problems import build_dataset, supervised_mask

CPU = torch.device("cpu")
TOL = 1e-5


class Solo:
    """One solo run, stepped by hand with the trainer's own functions."""

    def __init__(self, spec, data) -> None:
        self.spec, self.t = spec, spec.train
        self.model = build_model(spec, CPU)
        self.model.train()
        self.optimizer = make_optimizer(list(self.model.parameters()), self.t)
        self.tokens = torch.from_numpy(data.train_tokens).long()  # [N, W]
        self.mask = torch.from_numpy(supervised_mask(data.train_lengths, data.width, self.t.loss_on))  # [N, W-1]
        self.lengths = torch.from_numpy(data.train_lengths).long()  # [N]

    def rows(self, step: int):
        return batch_rows(step, len(self.tokens), self.t.batch_size, shuffle=self.t.shuffle, seed=self.t.seed)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows(step)
        return self.tokens[rows], self.mask[rows]  # [B, W], [B, W-1]

    def step(self, step: int) -> float:
        rows = self.rows(step)
        return train_step(self.model, self.optimizer, self.tokens[rows], self.mask[rows], self.lengths[rows],
                          loss_on=self.t.loss_on).item()


def make_runs(tiny_spec, overrides: list[dict]):
    specs = [tiny_spec(**o) for o in overrides]
    data = build_dataset(specs[0].problem)
    solos = [Solo(s, data) for s in specs]
    return specs, solos


def make_pack(specs, solos) -> Pack:
    return Pack([s.model for s in solos], lr=[s.train.lr for s in specs],
                weight_decay=[s.train.weight_decay for s in specs], optimizer=specs[0].train.optimizer)


def packed_batch(solos, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, masks = zip(*(s.batch(step) for s in solos))
    return torch.stack(tokens), torch.stack(masks)  # [M, B, W], [M, B, W-1]


def run_both(specs, solos, pack: Pack, steps: int) -> None:
    for step in range(1, steps + 1):
        tokens, mask = packed_batch(solos, step)
        packed_losses = pack.step(tokens, mask)  # [M]
        solo_losses = [s.step(step) for s in solos]
        assert packed_losses.tolist() == pytest.approx(solo_losses, abs=TOL)


def assert_members_match(pack: Pack, solos, tokens: torch.Tensor) -> None:
    """Each member's parameters and logits equal its solo model's within TOL."""
    logits = pack.logits(tokens[:, :, :-1]).detach()  # [M, B, W-1, V]
    for i, solo in enumerate(solos):
        state = pack.member_state_dict(i)
        for name, value in solo.model.state_dict().items():
            assert torch.allclose(state[name], value, atol=TOL, rtol=0), (i, name)
        assert torch.allclose(logits[i], solo.model(tokens[i, :, :-1]).detach(), atol=TOL, rtol=0), i


SEEDS = [{"seed": 0}, {"seed": 1}, {"seed": 2}]


def test_stacked_weights_are_each_solo_models_bit_for_bit(tiny_spec):
    specs, solos = make_runs(tiny_spec, SEEDS)
    pack = make_pack(specs, solos)
    for i, spec in enumerate(specs):
        fresh = build_model(spec, CPU).state_dict()  # built again from the seed, as the solo run builds it
        state = pack.member_state_dict(i)
        assert state.keys() == fresh.keys()
        for name, value in fresh.items():
            assert torch.equal(state[name], value), (i, name)
    assert not torch.equal(pack.member_state_dict(0)["embed.weight"], pack.member_state_dict(1)["embed.weight"])


@pytest.mark.parametrize("steps", [1, 10])
def test_members_equal_their_solo_runs_after_steps(tiny_spec, steps):
    specs, solos = make_runs(tiny_spec, SEEDS)
    pack = make_pack(specs, solos)
    run_both(specs, solos, pack, steps)
    for i, solo in enumerate(solos):  # the gradients the last step used (the sum of losses, not their mean)
        for name, p in solo.model.named_parameters():
            assert torch.allclose(pack.params[name].grad[i], p.grad, atol=TOL, rtol=0), (i, name)
    tokens, mask = packed_batch(solos, steps + 1)
    assert_members_match(pack, solos, tokens)
    # gradients at the next batch: each member's equals its solo model's
    pack.zero_grad()
    pack.losses(tokens, mask).sum().backward()
    for i, solo in enumerate(solos):
        solo.optimizer.zero_grad(set_to_none=True)
        logits = solo.model(tokens[i, :, :-1])  # [B, W-1, V]
        m = mask[i]
        torch.nn.functional.cross_entropy(logits[m], tokens[i, :, 1:][m]).backward()
        for name, p in solo.model.named_parameters():
            if p.grad is not None:
                assert torch.allclose(pack.params[name].grad[i], p.grad, atol=TOL, rtol=0), (i, name)


def test_members_with_their_own_lr_seed_and_decay_match_their_own_runs(tiny_spec):
    overrides = [{"seed": 3, "lr": 1e-2}, {"seed": 4, "lr": 3e-3, "weight_decay": 0.1}, {"seed": 5, "lr": 3e-2}]
    specs, solos = make_runs(tiny_spec, overrides)
    pack = make_pack(specs, solos)
    run_both(specs, solos, pack, 10)
    assert_members_match(pack, solos, packed_batch(solos, 11)[0])


def test_adamw_members_match_their_own_runs(tiny_spec):
    overrides = [{"seed": 6, "optimizer": "adamw", "weight_decay": 0.5}, {"seed": 7, "optimizer": "adamw", "weight_decay": 0.05}]
    specs, solos = make_runs(tiny_spec, overrides)
    pack = make_pack(specs, solos)
    run_both(specs, solos, pack, 10)
    assert_members_match(pack, solos, packed_batch(solos, 11)[0])


def test_no_cross_talk_gradient_and_outputs(tiny_spec):
    specs, solos = make_runs(tiny_spec, SEEDS)
    pack = make_pack(specs, solos)
    tokens, mask = packed_batch(solos, 1)
    losses = pack.losses(tokens, mask)  # [M]
    params = [pack.params[n] for n in pack.trainable]
    grads = torch.autograd.grad(losses[0], params)
    for name, g in zip(pack.trainable, grads):
        assert g[0].abs().sum() > 0 or name.endswith("bias"), name  # member 0 does learn from its loss
        assert torch.equal(g[1:], torch.zeros_like(g[1:])), name  # and nobody else does
    before = pack.logits(tokens[:, :, :-1]).detach()  # [M, B, W-1, V]
    with torch.no_grad():
        for n in pack.trainable:
            pack.params[n][1] += torch.randn_like(pack.params[n][1])
    after = pack.logits(tokens[:, :, :-1]).detach()
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.equal(after[1], before[1])


def test_pack_of_one_and_a_permuted_pack_give_the_same_members(tiny_spec):
    specs, solos = make_runs(tiny_spec, SEEDS)
    order = [2, 0, 1]
    pack = make_pack(specs, solos)
    permuted = make_pack([specs[j] for j in order], [solos[j] for j in order])
    singles = [make_pack([specs[j]], [solos[j]]) for j in range(3)]
    for step in range(1, 6):
        tokens, mask = packed_batch(solos, step)
        pack.step(tokens, mask)
        permuted.step(tokens[order], mask[order])
        for j, single in enumerate(singles):
            single.step(tokens[j:j + 1], mask[j:j + 1])
    for j in range(3):
        state = pack.member_state_dict(j)
        for other in (permuted.member_state_dict(order.index(j)), singles[j].member_state_dict(0)):
            for name, value in state.items():
                assert torch.allclose(other[name], value, atol=TOL, rtol=0), (j, name)


def test_member_reloads_into_a_solo_model(tiny_spec):
    specs, solos = make_runs(tiny_spec, SEEDS[:2])
    pack = make_pack(specs, solos)
    run_both(specs, solos, pack, 3)
    tokens = packed_batch(solos, 4)[0]
    solo_again = pack.member(1)
    assert torch.allclose(solo_again(tokens[1, :, :-1]), pack.logits(tokens[:, :, :-1])[1], atol=TOL, rtol=0)
    assert torch.allclose(solo_again(tokens[1, :, :-1]), solos[1].model(tokens[1, :, :-1]), atol=TOL, rtol=0)


def test_bad_packs_are_refused_with_the_setting_named(tiny_spec):
    with pytest.raises(ValueError, match="at least one"):
        Pack([])
    dropped = build_model(tiny_spec(dropout=0.1), CPU)
    with pytest.raises(ValueError, match="dropout"):
        Pack([dropped])
    a, b = build_model(tiny_spec(), CPU), build_model(tiny_spec(d_model=32), CPU)
    with pytest.raises(ValueError, match="ModelConfig"):
        Pack([a, b])
    with pytest.raises(ValueError, match="lr"):
        Pack([a, a], lr=[1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="optimizer"):
        Pack([a], optimizer="sgd")
    with pytest.raises(ValueError, match="tokens"):
        Pack([a]).logits(torch.zeros(2, 3, 4, dtype=torch.long))
