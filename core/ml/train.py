"""Training: one run of one model on one problem, reported through callbacks.

``train(spec, callbacks)`` builds the data and the model from a RunSpec, then loops over
optimizer steps. It knows nothing of databases, queues or the web: everything it learns leaves
through the :class:`Callbacks` methods (metrics, probe set, snapshots, checkpoints, progress), and
the only thing it asks is ``should_stop()``. The same function serves ``circuitboard train`` and
the workers, so a run is recorded the same way wherever it ran.

Reproducibility: the data order and the learning rate are pure functions of (seed, step), and a
resume checkpoint carries the model, optimizer and random states, so a resumed run on CPU continues
exactly where the interrupted one stopped.

Data order (``shuffle``):
- False (the paper): batches walk the rows sorted by length, the same order every epoch;
- True: a fresh seeded permutation each epoch.
With ``loss_on = "cot"`` a batch is trimmed to the widest row it holds, since nothing after the
EOS that ends y_L is scored; with ``"all"`` (the paper) every row keeps the full width.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.ml import checkpoints
from core.ml.evaluate import attention_patterns, generated, teacher_forced
from core.ml.metrics import score_patterns
from core.ml.model import ModelConfig, Transformer
from core.names import (
    HEADLINE_SCORE,
    LOSS,
    LR,
    ROLES,
    SCORES,
    SEQ_ACC,
    SEQ_ACC_ALL,
    SEQ_ACC_HELDOUT,
    SPLITS,
    TEST,
    TOKEN_ACC,
    TRAIN,
    metric_key,
    score_key,
    try_parse_score_key,
)
from core.problems import Dataset, build_dataset, figure_lengths, supervised_mask
from core.snapshots import pack


class TrainingError(RuntimeError):
    """A failure of the run itself (NaN loss, bad checkpoint), not of the machine it ran on."""


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    steps_per_s: float
    lr: float
    test_seq_acc: float | None = None
    peaky: dict[str, float] | None = None  # best peaky_thres over heads, per role, at the last snapshot


class Callbacks:
    """Where training reports; override what you need. Every method is a no-op by default."""

    def probe_set(self, tokens: np.ndarray, lengths: np.ndarray) -> None: ...
    def metrics(self, step: int, values: dict[str, float]) -> None: ...
    def snapshot(self, step: int, blob: bytes, layout: dict) -> None: ...
    def checkpoint(self, step: int, kind: str, data: bytes) -> None: ...
    def progress(self, progress: Progress) -> None: ...
    def should_stop(self) -> bool:
        return False


@dataclass
class TrainResult:
    steps: int  # the last step trained
    stopped: bool  # True when should_stop() ended the loop early
    final_metrics: dict[str, float]


def resolve_device(name: str | None) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N'; None means cpu. A CUDA request without CUDA is an error."""
    device = torch.device(name or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available here")
    return device


def lr_at(step: int, train) -> float:
    """Learning rate of optimizer step ``step`` (1-based): linear warmup, then constant or cosine."""
    if train.warmup_steps and step <= train.warmup_steps:
        return train.lr * step / train.warmup_steps
    if train.schedule == "constant":
        return train.lr
    span = max(1, train.steps - train.warmup_steps)
    progress = min(1.0, (step - train.warmup_steps) / span)
    floor = train.min_lr_ratio
    return train.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def qk_scale_at(step: int, train) -> float:
    """The attention-logit multiplier at optimizer step ``step``: 1 until ``qk_scale_from``, then a
    linear ramp that reaches ``qk_scale`` at ``qk_scale_until`` and stays there. A pure function of
    the step, like the learning rate, so a resumed run picks the ramp up where it was."""
    if train.qk_scale == 1.0 or step <= train.qk_scale_from:
        return 1.0
    span = max(1, train.qk_scale_until - train.qk_scale_from)
    return 1.0 + (train.qk_scale - 1.0) * min(1.0, (step - train.qk_scale_from) / span)


def batch_rows(step: int, n_rows: int, batch_size: int, *, shuffle: bool, seed: int) -> torch.Tensor | slice:
    """Row indices of the batch for optimizer step ``step`` (1-based); last partial batch dropped."""
    per_epoch = max(1, n_rows // batch_size)
    epoch, index = divmod(step - 1, per_epoch)
    start = index * batch_size
    if not shuffle:
        return slice(start, min(start + batch_size, n_rows))
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_rows, generator=generator)[start:start + batch_size]


def select_trainable(model: Transformer, modules: tuple[str, ...] | None) -> list[torch.nn.Parameter]:
    """Freeze every parameter outside ``modules`` (dotted names; None trains everything)."""
    named = dict(model.named_modules())
    unknown = [name for name in modules or () if name not in named]
    if unknown:
        raise TrainingError(f"trainable: unknown module(s) {unknown}; e.g. blocks.1.mlp, embed, unembed")
    chosen = {id(p) for name in (modules or ("",)) for p in named[name].parameters()}
    params = []
    for p in model.parameters():
        keep = id(p) in chosen and p.requires_grad  # a frozen positional table stays frozen
        p.requires_grad_(keep)
        if keep:
            params.append(p)
    return params


def train_step(model, optimizer, tokens: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, *,
               loss_on: str) -> torch.Tensor:
    """One optimizer step on tokens [B, W], target mask [B, W-1], lengths [B]; returns the loss.

    The mean cross-entropy over supervised targets. Two trims leave it unchanged: with 'cot' the
    batch stops after the EOS that ends its longest y_L, and the model is asked only for positions
    from the batch's first scored target on (``first_output``)."""
    if loss_on == "cot":
        width = 2 * int(lengths.max()) + 3  # up to the EOS after the longest y_L
        tokens, mask = tokens[:, :width], mask[:, :width - 1]
    first = int(lengths.min()) + 1  # target j predicts token j+1; the first scored one is y_1's
    logits = model(tokens[:, :-1], first_output=first)  # [B, w-1-first, d_vocab]
    targets, mask = tokens[:, 1 + first:], mask[:, first:]  # [B, w-1-first]
    loss = F.cross_entropy(logits[mask], targets[mask])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def make_optimizer(params, train) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=train.lr, weight_decay=train.weight_decay)


def evaluate(model, data: Dataset, spec, device, *, full: bool = False) -> dict[str, float]:
    """Teacher-forced accuracy on train and test (per length and averaged), and generated accuracy.
    ``eval_rows_per_len`` bounds the rows per length of each split, except when ``full``."""
    p, t = spec.problem, spec.train
    values: dict[str, float] = {}
    for split in SPLITS:
        tokens, lengths = data.split(split)
        acc = teacher_forced(model, tokens, lengths, loss_on=t.loss_on, device=device,
                             per_length=None if full else t.eval_rows_per_len)
        for length in acc.rows:
            values[metric_key(split, SEQ_ACC, length)] = acc.seq_acc(length)
            values[metric_key(split, TOKEN_ACC, length)] = acc.tok_correct[length] / acc.tok_total[length]
        values[metric_key(split, SEQ_ACC)] = acc.mean_seq_acc(*figure_lengths(p.min_len, p.max_len))
        values[metric_key(split, SEQ_ACC_ALL)] = acc.mean_seq_acc(p.min_len, p.max_len)
        values[metric_key(split, TOKEN_ACC)] = sum(acc.tok_correct.values()) / sum(acc.tok_total.values())
        if split == TEST and p.test_max_len and p.test_max_len > p.max_len:
            values[metric_key(split, SEQ_ACC_HELDOUT)] = acc.mean_seq_acc(p.max_len + 1, p.test_max_len)
    if t.eval_generate:
        tokens, lengths = data.split(TEST)
        for name, value in generated(model, tokens, lengths, loss_on=t.loss_on, device=device).items():
            values[metric_key(TEST, name)] = value
    model.train()
    return values


def snapshot(model, data: Dataset, spec, device) -> tuple[bytes, dict, dict[str, float]]:
    """Attention on the probe set: (packed blob, layout, score metrics)."""
    patterns = attention_patterns(model, data.probe_tokens, device=device)  # [N, layers, H, W, W]
    model.train()
    blob, layout = pack(patterns, data.probe_lengths)
    scores = score_patterns(patterns, data.probe_lengths)
    values = {}
    for role in ROLES:
        for score in SCORES:
            averaged = scores.averaged(role, score, spec.problem.max_len)  # [layers, H]
            per_length = scores.scores[role][score]  # [layers, H, n_lengths]
            for layer in range(averaged.shape[0]):
                for head in range(averaged.shape[1]):
                    values[score_key(role, score, layer, head)] = float(averaged[layer, head])
                    for j, length in enumerate(scores.lengths):
                        values[score_key(role, score, layer, head, length)] = float(per_length[layer, head, j])
    return blob, layout, values


def best_peaky(values: dict[str, float]) -> dict[str, float] | None:
    """Best averaged peaky_thres over every (layer, head), per role, from one record's values."""
    best: dict[str, float] = {}
    for key, value in values.items():
        found = try_parse_score_key(key)
        if found is not None and found.score == HEADLINE_SCORE and found.length is None:
            best[found.role] = max(best.get(found.role, 0.0), value)
    return best or None


def build_model(spec, device) -> Transformer:
    torch.manual_seed(spec.train.seed)
    return Transformer(ModelConfig.from_spec(spec)).to(device)


def record_step(model, data, spec, device, cb, step: int) -> dict[str, float]:
    """What a run records at ``step``: evaluation, snapshot and head scores, weights (the packed trainer's too)."""
    t = spec.train
    values: dict[str, float] = {}
    if step % t.eval_every == 0 or step == t.steps:
        values.update(evaluate(model, data, spec, device, full=step == t.steps))
    if step % t.snapshot_every == 0 or step == t.steps:
        blob, layout, scores = snapshot(model, data, spec, device)
        values.update(scores)
        cb.snapshot(step, blob, layout)
        cb.checkpoint(step, checkpoints.WEIGHTS, checkpoints.to_bytes(checkpoints.model_weights(model)))
    if values:
        cb.metrics(step, values)
    return values


def train(spec, callbacks: Callbacks | None = None, *, resume: bytes | None = None,
          init_weights: dict | None = None, data: Dataset | None = None) -> TrainResult:
    """Train ``spec`` (a RunSpec). ``resume``: a resume checkpoint's bytes; ``init_weights``: a
    parent run's model state dict (transfer), loaded before ``trainable`` freezes the rest."""
    cb = callbacks or Callbacks()
    t = spec.train
    device = resolve_device(t.device)
    data = data or build_dataset(spec.problem)
    model = build_model(spec, device)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    optimizer = make_optimizer(select_trainable(model, t.trainable_modules), t)
    start = 0
    if resume is not None:
        state = checkpoints.from_bytes(resume)  # on the cpu: the random states must stay there; loading moves the rest
        model.load_state_dict(state.get("train_model", state["model"]))  # unfolded while sharpening
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        model.qk_scale = qk_scale_at(start, t)
    cb.probe_set(data.probe_tokens, data.probe_lengths)

    train_tokens = torch.from_numpy(data.train_tokens).to(device=device, dtype=torch.long)  # [N, W]
    train_mask = torch.from_numpy(supervised_mask(data.train_lengths, data.width, t.loss_on)).to(device)  # [N, W-1]
    train_lengths = torch.from_numpy(data.train_lengths.astype(np.int64)).to(device)  # [N]
    n_rows = len(train_tokens)

    def record(step: int) -> dict[str, float]:
        return record_step(model, data, spec, device, cb, step)

    final: dict[str, float] = {}
    if start == 0:
        final.update(record(0))
    else:
        checkpoints.restore_rng(state)
    model.train()
    last_time, last_step, loss_sum, loss_count = time.perf_counter(), start, 0.0, 0

    def report(step: int) -> None:
        """Record the mean training loss since the last report, and the progress, at ``step``."""
        nonlocal last_time, last_step, loss_sum, loss_count
        now, lr, mean_loss = time.perf_counter(), lr_at(step, t), loss_sum / loss_count
        cb.metrics(step, {metric_key(TRAIN, LOSS): mean_loss, metric_key(TRAIN, LR): lr})
        cb.progress(Progress(step, t.steps, mean_loss, (step - last_step) / max(now - last_time, 1e-9), lr, test_acc,
                             peaky))
        last_time, last_step, loss_sum, loss_count = now, step, 0.0, 0

    test_acc = final.get(metric_key(TEST, SEQ_ACC))
    peaky = best_peaky(final)
    step = start
    stopped = False
    for step in range(start + 1, t.steps + 1):
        if cb.should_stop():
            stopped, step = True, step - 1
            break
        lr = lr_at(step, t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.qk_scale = qk_scale_at(step, t)
        rows = batch_rows(step, n_rows, t.batch_size, shuffle=t.shuffle, seed=t.seed)
        loss = train_step(model, optimizer, train_tokens[rows], train_mask[rows], train_lengths[rows],
                          loss_on=t.loss_on)

        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        if not math.isfinite(loss_sum):
            raise TrainingError(f"loss became {loss.item()} at step {step}")
        values = record(step)
        final.update(values)
        test_acc = values.get(metric_key(TEST, SEQ_ACC), test_acc)
        peaky = best_peaky(values) or peaky
        if step % t.checkpoint_every == 0 and step != t.steps:
            cb.checkpoint(step, checkpoints.RESUME, checkpoints.to_bytes(checkpoints.resume_state(model, optimizer, step)))
        if time.perf_counter() - last_time >= 1.0 or step == t.steps or values:
            report(step)
    if stopped and loss_count:  # the steps since the last report: their loss and the step reached are recorded too
        report(step)
    cb.checkpoint(step, checkpoints.RESUME, checkpoints.to_bytes(checkpoints.resume_state(model, optimizer, step)))
    return TrainResult(steps=step, stopped=stopped, final_metrics=final)
