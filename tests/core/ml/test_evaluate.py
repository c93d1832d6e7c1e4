"""Accuracy by length: teacher forcing, greedy generation, chunking, and which targets count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.ml import checkpoints
from core.ml.evaluate import Accuracy, attention_patterns, forward_width, generated, teacher_forced
from core.ml.train import Callbacks, build_model, train
from core.problems import build_dataset, get_problem, tokens
from core.specs.run import ProblemSpec

CPU = torch.device("cpu")


class Oracle(nn.Module):
    """Predicts the true next token of any prefix (one-hot logits), except at target positions in ``wrong``.

    ``wrong`` maps an input length L to target indices j whose prediction (of token j + 1) is made wrong.
    """

    def __init__(self, problem: str, width: int, wrong: dict[int, set[int]] | None = None) -> None:
        super().__init__()
        self.problem, self.width, self.wrong = get_problem(problem), width, wrong or {}
        self.calls = 0

    def new_cache(self) -> dict:
        return {"prefix": None}

    def forward(self, prefix: torch.Tensor, first_output: int = 0, cache: dict | None = None) -> torch.Tensor:
        """Logits of positions first_output..T-1, as Transformer.forward returns them; with a
        ``cache``, prefix holds the positions after those it saw before (their logits only)."""
        self.calls += 1
        if cache is not None:
            seen = cache["prefix"]
            first_output += 0 if seen is None else seen.shape[1]
            prefix = cache["prefix"] = prefix if seen is None else torch.cat([seen, prefix], dim=1)
        n, T = prefix.shape
        logits = torch.zeros(n, T, tokens.VOCAB_SIZE)
        for i, row in enumerate(prefix.numpy()):
            if tokens.EOI not in row:
                continue  # still in its prompt: no prediction (a decoder must not read one here)
            eoi = int(np.flatnonzero(row == tokens.EOI)[0])
            length = eoi - 1
            x = row[1:eoi][None, :]
            truth = np.full(self.width + 1, tokens.EOS)
            truth[: 2 * length + 2] = np.concatenate([row[:1], x[0], [tokens.EOI], self.problem.iterate(x)[0]])
            nxt = truth[1 : T + 1].copy()  # [T] the true next tokens
            for j in self.wrong.get(length, ()):
                if j < T:
                    nxt[j] = (nxt[j] + 1) % tokens.VOCAB_SIZE
            logits[i, torch.arange(T), torch.from_numpy(nxt.astype(np.int64))] = 1.0
        return logits[:, first_output:]


@pytest.fixture(scope="module")
def data():
    spec = ProblemSpec(problem="polynomial", max_len=4, n_train_per_len=8, n_test_per_len=6, probe_per_len=2)
    return build_dataset(spec)


@pytest.mark.parametrize("loss_on", ["all", "cot"])
def test_a_perfect_model_scores_one(data, loss_on):
    toks, lengths = data.split("test")
    acc = teacher_forced(Oracle("polynomial", data.width), toks, lengths, loss_on=loss_on, device=CPU)
    assert sorted(acc.rows) == [1, 2, 3, 4]
    assert all(acc.rows[n] == 6 for n in acc.rows)
    assert all(acc.seq_acc(n) == 1.0 for n in acc.rows)
    assert acc.tok_correct == acc.tok_total
    # supervised targets per row: all -> every target after EoI up to the width; cot -> y_1..y_L and one EoS
    for n in acc.rows:
        per_row = (data.width - 1 - (n + 1)) if loss_on == "all" else n + 1
        assert acc.tok_total[n] == 6 * per_row
    assert acc.mean_seq_acc(1, 4) == 1.0


@pytest.mark.parametrize("loss_on", ["all", "cot"])
def test_one_wrong_supervised_position_fails_the_sequence(data, loss_on):
    toks, lengths = data.split("test")
    L = 3
    y2_target = (L + 1) + 1  # target index j predicts token j + 1 = y_2 at position e + 2 = L + 3
    model = Oracle("polynomial", data.width, wrong={L: {y2_target}})
    acc = teacher_forced(model, toks, lengths, loss_on=loss_on, device=CPU)
    assert acc.seq_acc(L) == 0.0
    assert acc.tok_total[L] - acc.tok_correct[L] == acc.rows[L]  # exactly one wrong token per row
    assert all(acc.seq_acc(n) == 1.0 for n in (1, 2, 4))
    assert acc.mean_seq_acc(1, 4) == pytest.approx(0.75)
    # the final EoS is supervised too
    eos_target = 2 * L + 1
    acc = teacher_forced(Oracle("polynomial", data.width, wrong={L: {eos_target}}), toks, lengths,
                         loss_on=loss_on, device=CPU)
    assert acc.seq_acc(L) == 0.0


def test_padding_after_the_final_eos_counts_for_all_but_not_for_cot(data):
    toks, lengths = data.split("test")
    L = 2
    late_pad = 2 * L + 3  # predicts the second EoS after y_L (width 11 has positions up to 10)
    model = Oracle("polynomial", data.width, wrong={L: {late_pad}})
    assert teacher_forced(model, toks, lengths, loss_on="all", device=CPU).seq_acc(L) == 0.0
    assert teacher_forced(model, toks, lengths, loss_on="cot", device=CPU).seq_acc(L) == 1.0


@pytest.mark.parametrize("loss_on", ["all", "cot"])
def test_unsupervised_positions_do_not_count(data, loss_on):
    toks, lengths = data.split("test")
    # every target up to and including the one predicting EoI (j = 0..L) is wrong
    wrong = {n: set(range(0, n + 1)) for n in range(1, 5)}
    acc = teacher_forced(Oracle("polynomial", data.width, wrong=wrong), toks, lengths, loss_on=loss_on, device=CPU)
    assert all(acc.seq_acc(n) == 1.0 for n in acc.rows)
    assert acc.tok_correct == acc.tok_total


def test_per_length_limits_the_rows(data):
    toks, lengths = data.split("test")
    acc = teacher_forced(Oracle("polynomial", data.width), toks, lengths, loss_on="all", device=CPU, per_length=2)
    assert acc.rows == {1: 2, 2: 2, 3: 2, 4: 2}


def test_forward_width():
    assert forward_width(3, 11, "all") == 11
    assert forward_width(3, 11, "cot") == 9
    assert forward_width(4, 11, "cot") == 11


def test_generation_of_a_perfect_model_is_perfect_and_a_wrong_answer_is_seen(data):
    toks, lengths = data.split("test")
    out = generated(Oracle("polynomial", data.width), toks, lengths, loss_on="all", device=CPU)
    assert out == {"gen_acc": 1.0, "gen_answer_acc": 1.0}
    L = 4
    answer_target = 2 * L  # predicts y_L at position 2L + 1
    out = generated(Oracle("polynomial", data.width, wrong={L: {answer_target}}), toks, lengths,
                    loss_on="all", device=CPU)
    assert out["gen_acc"] == pytest.approx(0.75)
    assert out["gen_answer_acc"] == pytest.approx(0.75)


def test_generation_decodes_every_length_in_one_pass_per_position(data):
    toks, lengths = data.split("test")  # lengths 1..4, 6 rows each: one chunk
    oracle = Oracle("polynomial", data.width, wrong={1: {2}})  # y_1 wrong for L = 1: the prompt rows of L > 1 must not take it
    out = generated(oracle, toks, lengths, loss_on="all", device=CPU)
    assert oracle.calls == data.width - 1 - 2  # positions EoI(L=1)=2 .. width-2, whatever the number of lengths
    assert out == {"gen_acc": pytest.approx(0.75), "gen_answer_acc": pytest.approx(0.75)}
    per_length = [generated(oracle, toks[lengths == n], lengths[lengths == n], loss_on="cot", device=CPU)
                  for n in (1, 2, 3, 4)]
    together = generated(oracle, toks, lengths, loss_on="cot", device=CPU)
    assert together["gen_acc"] == pytest.approx(np.mean([o["gen_acc"] for o in per_length]))


def test_mean_seq_acc_is_unweighted_over_lengths_in_range():
    acc = Accuracy()
    acc.add(1, seq=1, tok=1, tok_total=1, rows=1)
    acc.add(4, seq=0, tok=0, tok_total=1, rows=3)
    acc.add(4, seq=3, tok=1, tok_total=1, rows=3)
    acc.add(5, seq=1, tok=1, tok_total=1, rows=4)
    assert acc.seq_acc(4) == pytest.approx(0.5)
    assert acc.mean_seq_acc(4, 5) == pytest.approx((0.5 + 0.25) / 2)
    assert acc.mean_seq_acc(1, 5) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert np.isnan(acc.mean_seq_acc(6, 9))


@pytest.fixture(scope="module")
def trained():
    """A parity model trained a little: some lengths solved, some not (set up once for this module)."""
    from core.specs.run import RunSpec

    torch.set_num_threads(1)
    spec = RunSpec.from_flat({
        "problem": "parity", "max_len": 4, "n_train_per_len": 64, "n_test_per_len": 32, "probe_per_len": 2,
        "d_model": 32, "steps": 40, "batch_size": 32, "lr": 1e-2, "dropout": 0.0, "shuffle": True,
        "eval_every": 1000, "snapshot_every": 1000, "checkpoint_every": 1000, "eval_generate": False,
    })
    final = {}

    class Keep(Callbacks):
        def checkpoint(self, step, kind, data):
            if kind == checkpoints.RESUME:
                final["state"] = checkpoints.from_bytes(data)["model"]

    train(spec, Keep())
    model = build_model(spec, CPU)
    model.load_state_dict(final["state"])
    return model.eval(), build_dataset(spec.problem)


@pytest.mark.parametrize("loss_on", ["all", "cot"])
def test_greedy_generation_equals_teacher_forced_sequence_accuracy(trained, loss_on):
    model, data = trained
    toks, lengths = data.split("test")
    acc = teacher_forced(model, toks, lengths, loss_on=loss_on, device=CPU)
    per_length = [acc.seq_acc(n) for n in sorted(acc.rows)]
    assert any(0 < a < 1 for a in per_length), per_length  # some rows right, some wrong: not trivial
    for n in sorted(acc.rows):
        rows = lengths == n
        out = generated(model, toks[rows], lengths[rows], loss_on=loss_on, device=CPU, per_length=64)
        assert out["gen_acc"] == pytest.approx(acc.seq_acc(n)), n


def test_chunking_gives_the_same_numbers(trained):
    model, data = trained
    toks, lengths = data.split("test")
    whole = teacher_forced(model, toks, lengths, loss_on="all", device=CPU)
    chunked = teacher_forced(model, toks, lengths, loss_on="all", device=CPU, chunk=5)
    assert chunked.seq_correct == whole.seq_correct
    assert chunked.tok_correct == whole.tok_correct
    assert chunked.tok_total == whole.tok_total
    assert chunked.rows == whole.rows
    assert generated(model, toks, lengths, loss_on="all", device=CPU, chunk=7) == generated(
        model, toks, lengths, loss_on="all", device=CPU)
    np.testing.assert_allclose(attention_patterns(model, data.probe_tokens, device=CPU, chunk=3),
                               attention_patterns(model, data.probe_tokens, device=CPU), atol=1e-6)


def test_attention_patterns_shape_and_rows(trained):
    model, data = trained
    patterns = attention_patterns(model, data.probe_tokens, device=CPU)
    n, width = data.probe_tokens.shape
    assert patterns.shape == (n, 2, 1, width, width)
    assert patterns.dtype == np.float32
    np.testing.assert_allclose(patterns.sum(-1), 1.0, atol=1e-5)
