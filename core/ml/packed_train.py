"""Packed training: M runs of one model shape trained together, each exactly as its solo run.

``train_pack(specs, callbacks)`` is ``core.ml.train.train`` for several RunSpecs at once. Each
member is set up as its solo run sets itself up (its data, its model initialised from its own seed,
its ``init_from`` weights, its ``trainable`` modules, its resume checkpoint), then the members'
parameters are stacked into a :class:`~core.ml.packed.PackedTransformer` and every tick runs one
forward, one backward and one optimizer step for all of them. Each member keeps everything of its
own that leaves shapes alone:

- its batches: ``batch_rows`` at its own step, from its own data, seed and ``loss_on`` trim;
- its dropout: its probability, and the masks its solo run would draw (a generator per member that
  starts in the state the solo run's global generator is in after initialisation);
- its learning rate, warmup, schedule, weight decay, Adam or AdamW, ``qk_scale`` ramp and frozen
  parameters: ``PackedAdam`` (core/ml/packed_step.py) is Adam over the stacked buffer with
  hyper-parameters per member;
- its step count: members may start at different steps (resumed) and stop at different ones.

The loss is the sum over members of each member's own mean loss, never divided by M, so member i's
gradient is its solo gradient. Everything a member reports leaves through its own
:class:`~core.ml.train.Callbacks`, in the solo formats: at its evaluation and snapshot steps the
member is copied into a solo ``Transformer`` and evaluated, snapshotted and scored by the solo code;
its resume checkpoints are solo resume checkpoints (a solo run resumes from them, and a pack resumes
from a solo one). A member whose loss is not finite fails alone, one whose ``should_stop()`` is true
stops alone; either leaves the pack, which shrinks and goes on with the rest.

:class:`Pack` is the state being stepped (members, stacked model, optimizer): ``train_pack`` is its
loop with the solo trainer's recording, and the tests step a ``Pack`` directly.

On CUDA the step runs without host synchronisation (hyper-parameters reach the device by an
asynchronous copy, losses are summed on the device and read once a second or at record steps) and,
with ``cuda_graphs=True``, is replayed from a CUDA graph captured once per batch shape
(``PackedStep``). TF32 matmuls are off unless ``tf32=True``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from core.ml import checkpoints
from core.ml.model import ModelConfig, Transformer
from core.ml.packed import PackedTransformer, shape_key
from core.ml.packed_step import PackedAdam, PackedStep, set_tf32
from core.ml.train import (
    Callbacks, Progress, TrainingError, TrainResult, batch_rows, best_peaky, build_model,
    lr_at, make_optimizer, qk_scale_at, resolve_device, select_trainable, record_step,
)
from core.names import metric_key
from core.packing import pack_key
from core.problems import Dataset, build_dataset, supervised_mask

class PackError(ValueError):
    """Specs that cannot share a pack; the message names the field that differs."""


class PackCallbacks(Callbacks):
    """A member's callbacks: the solo ones, plus the member's solo-shaped model at each record step."""

    def model(self, step: int, model: Transformer) -> None: ...


# ----------------------------------------------------------------------------------- compatibility

PACK_FIELDS = ("batch_size", "device")  # TrainSpec fields every member of a pack shares


def group_packs(specs, size: int) -> list[list[int]]:
    """Indices of ``specs`` in packs of at most ``size`` runs of one ``pack_key``, in order of first
    appearance (the job layer's grouping of a seed set, a sweep or a queue)."""
    if size < 1:
        raise PackError(f"pack_size: must be >= 1 (got {size})")
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(pack_key(spec), []).append(i)
    return [rows[start:start + size] for rows in groups.values() for start in range(0, len(rows), size)]


def check_packable(specs) -> None:
    """Raise PackError unless every spec has one model shape, batch size and device."""
    if not specs:
        raise PackError("pack: needs at least one run")
    configs = [shape_key(ModelConfig.from_spec(s)) for s in specs]
    for f in fields(ModelConfig):
        values = sorted({getattr(c, f.name) for c in configs}, key=str)
        if len(values) > 1:
            name = "max_len / test_max_len (n_ctx)" if f.name == "n_ctx" else f.name
            raise PackError(f"{name}: members of one pack must share it (got {', '.join(map(str, values))})")
    for name in PACK_FIELDS:
        values = sorted({getattr(s.train, name) for s in specs}, key=str)
        if len(values) > 1:
            raise PackError(f"{name}: members of one pack must share it (got {', '.join(map(str, values))})")


# ----------------------------------------------------------------------------------------- members


@dataclass
class Member:
    """One run of a pack: its spec, data, solo model, optimizer shell, generator and counters."""

    index: int  # its position in the specs given to train_pack
    spec: object
    callbacks: Callbacks
    data: Dataset
    model: Transformer  # solo-shaped: initialisation, then evaluation and checkpoints
    optimizer: torch.optim.Optimizer  # the solo optimizer over model's trainable parameters (checkpoints)
    generator: torch.Generator  # the solo run's dropout randomness
    tokens: torch.Tensor  # [N, W] train rows on the device
    mask: torch.Tensor  # [N, W-1]
    lengths: np.ndarray  # [N] on the host: batch widths without a device sync
    step: int  # the last step trained
    final: dict = field(default_factory=dict)
    loss_total: float = 0.0  # summed losses since the last progress report
    loss_count: int = 0
    last_time: float = 0.0
    last_step: int = 0
    test_acc: float | None = None
    peaky: dict | None = None

    @property
    def t(self):
        return self.spec.train

    @property
    def done(self) -> bool:
        return self.step >= self.t.steps

    def records_at(self, step: int) -> bool:
        """Whether the solo run evaluates, snapshots or checkpoints at ``step``."""
        t = self.t
        everies = (t.eval_every, t.snapshot_every, t.checkpoint_every)
        return step == t.steps or any(step % every == 0 for every in everies)


def member_from_spec(spec, callbacks: Callbacks | None = None, *, index: int = 0, resume: bytes | None = None,
                     init_weights: dict | None = None, data: Dataset | None = None) -> Member:
    """Set a member up exactly as ``train()`` sets up a solo run (the same calls in the same order).
    Leaves the global generator seeded by the member's seed, as ``build_model`` does."""
    t = spec.train
    callbacks = callbacks or Callbacks()
    device = resolve_device(t.device)
    data = data or build_dataset(spec.problem)
    model = build_model(spec, device)  # seeds the global generator with t.seed, then draws the weights
    if device.type == "cuda":
        generator = torch.Generator(device=device).manual_seed(t.seed)  # what manual_seed gave the solo run
    else:
        generator = torch.Generator().set_state(torch.get_rng_state())  # the solo run's state after init
    if init_weights is not None:
        try:
            model.load_state_dict(init_weights)
        except RuntimeError as exc:
            raise TrainingError(f"init_from: weights do not fit this model ({exc})") from exc
    optimizer = make_optimizer(select_trainable(model, t.trainable_modules), t)
    step = 0
    if resume is not None:
        state = checkpoints.from_bytes(resume)
        model.load_state_dict(state.get("train_model", state["model"]))
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        model.qk_scale = qk_scale_at(step, t)
        if device.type == "cuda":
            if "rng_cuda" in state:
                generator.set_state(state["rng_cuda"][device.index or 0])
        else:
            generator.set_state(state["rng_cpu"])
    callbacks.probe_set(data.probe_tokens, data.probe_lengths)
    return Member(
        index=index, spec=spec, callbacks=callbacks, data=data, model=model, optimizer=optimizer,
        generator=generator,
        tokens=torch.from_numpy(data.train_tokens).to(device=device, dtype=torch.long),
        mask=torch.from_numpy(supervised_mask(data.train_lengths, data.width, t.loss_on)).to(device),
        lengths=data.train_lengths.astype(np.int64), step=step,
    )


# -------------------------------------------------------------------------------------------- pack


class Pack:
    """Members of one shape, their stacked model and their optimizer: the state a tick advances."""

    def __init__(self, members: list[Member], *, cuda_graphs: bool = False, attention: str = "fused") -> None:
        check_packable([m.spec for m in members])
        self.members = members
        self.device = members[0].tokens.device
        self.packed = PackedTransformer.from_models([m.model for m in members], self.device, attention=attention)
        P = self.packed.flat.shape[1]
        trains = torch.zeros(len(members), P, dtype=torch.bool)
        moments = torch.zeros(2, len(members), P)
        steps = []
        for row, m in enumerate(members):  # the solo optimizers' state, as columns of the pack
            names = {id(p): name for name, p in m.model.named_parameters()}
            step = 0
            for p in m.optimizer.param_groups[0]["params"]:
                cols = self.packed.columns[names[id(p)]]
                trains[row, cols] = True
                state = m.optimizer.state.get(p)
                if state:
                    moments[0, row, cols] = state["exp_avg"].reshape(-1).cpu()
                    moments[1, row, cols] = state["exp_avg_sq"].reshape(-1).cpu()
                    step = int(state["step"])
            steps.append(step)
        self.adam = PackedAdam(self.packed, trains.to(self.device), [m.t.weight_decay for m in members],
                               [m.t.optimizer == "adamw" for m in members], steps)
        self.adam.exp_avg.copy_(moments[0])
        self.adam.exp_avg_sq.copy_(moments[1])
        self._skip_untrained()
        self.stepper = PackedStep(self.packed, self.adam, cuda_graphs=cuda_graphs)

    def _skip_untrained(self) -> None:
        """No gradient for a parameter that no member trains (a frozen table, ``trainable=mlp2``)."""
        for name, p in self.packed.params.items():
            p.requires_grad_(p.requires_grad and bool(self.adam.trains[:, self.packed.columns[name]].any()))

    def tick(self) -> torch.Tensor:
        """Train every member one step (its next one); returns their losses [M], on the device."""
        for m in self.members:
            m.step += 1
        self.packed.qk_scale.copy_(torch.tensor([qk_scale_at(m.step, m.t) for m in self.members]), non_blocking=True)
        self.adam.set_lr([lr_at(m.step, m.t) for m in self.members])
        self.packed.train()
        return self.stepper(*self.batch())

    def batch(self):
        """Every member's batch at its current step, padded to the pack's widest: tokens [M, B, W],
        mask [M, B, W-1] (False on the padding), dropout scale [M, B, W-1, d] or None, and the first
        scored position over all members. A member's padding lies after its own width (causal
        attention keeps it from reaching back) or before its first scored target (outputs nobody
        reads); its own positions see exactly its solo batch and its solo dropout mask."""
        rows, widths, firsts = [], [], []
        for m in self.members:
            r = batch_rows(m.step, len(m.tokens), m.t.batch_size, shuffle=m.t.shuffle, seed=m.t.seed)
            lengths = m.lengths[r if isinstance(r, slice) else r.numpy()]  # on the host: no device sync
            widths.append(2 * int(lengths.max()) + 3 if m.t.loss_on == "cot" else m.data.width)  # train_step's trim
            firsts.append(int(lengths.min()) + 1)
            rows.append(r if isinstance(r, slice) else r.to(self.device, non_blocking=True))
        W, first = max(widths), min(firsts)
        M, B, d = len(self.members), self.members[0].t.batch_size, self.packed.cfg.d_model
        tokens = torch.stack([m.tokens[r, :W] for m, r in zip(self.members, rows)])  # [M, B, W]
        mask = torch.zeros(M, B, W - 1, dtype=torch.bool, device=self.device)  # [M, B, W-1]
        for i, (m, r, w) in enumerate(zip(self.members, rows, widths)):
            mask[i, :, :w - 1] = m.mask[r, :w - 1]
        if all(m.spec.model.dropout == 0 for m in self.members):
            return tokens, mask, None, first
        scale = torch.ones(M, B, W - 1, d, device=self.device)  # [M, B, W-1, d]
        for i, (m, w) in enumerate(zip(self.members, widths)):
            p = m.spec.model.dropout
            if p > 0:  # the solo EmbeddingDropout's draw, from the solo run's generator
                draw = torch.rand(B, w - 1, d, generator=m.generator, device=self.device)  # [B, w-1, d]
                scale[i, :, :w - 1] = (draw >= p).to(scale.dtype).mul_(1.0 / (1.0 - p))
        return tokens, mask, scale, first

    def model(self, row: int) -> Transformer:
        """Member ``row``'s solo model, holding its current parameters and ``qk_scale``."""
        m = self.members[row]
        m.model.load_state_dict(self.packed.member_state_dict(row))
        m.model.qk_scale = qk_scale_at(m.step, m.t)
        return m.model

    def resume_checkpoint(self, row: int) -> bytes:
        """A solo resume checkpoint of member ``row``: its model, its Adam state in torch's format,
        its step, and its generator's state where the solo run keeps the global one."""
        m = self.members[row]
        model = self.model(row)
        names = {id(p): name for name, p in model.named_parameters()}
        for p in m.optimizer.param_groups[0]["params"]:
            cols = self.packed.columns[names[id(p)]]
            m.optimizer.state[p] = {
                "step": torch.tensor(float(self.adam.steps[row])),
                "exp_avg": self.adam.exp_avg[row, cols].view_as(p).clone(),
                "exp_avg_sq": self.adam.exp_avg_sq[row, cols].view_as(p).clone(),
            }
        for group in m.optimizer.param_groups:
            group["lr"] = lr_at(max(m.step, 1), m.t)
        state = checkpoints.resume_state(model, m.optimizer, m.step)
        if m.generator.device.type == "cuda":
            rng = torch.cuda.get_rng_state_all()
            rng[m.generator.device.index or 0] = m.generator.get_state()
            state["rng_cuda"] = rng
        else:
            state["rng_cpu"] = m.generator.get_state()
        return checkpoints.to_bytes(state)

    def keep(self, rows: list[int]) -> None:
        """Go on with these members only: the pack is rebuilt from their rows of every buffer."""
        self.members = [self.members[i] for i in rows]
        if not rows:
            return
        smaller = PackedTransformer(self.packed.cfg, len(rows), self.device, attention=self.packed.attention)
        smaller.flat.copy_(self.packed.flat[rows])
        self.packed = smaller
        self.adam.keep(rows)
        self.adam.flat, self.adam.grad = smaller.flat, smaller.flat_grad
        self._skip_untrained()
        self.stepper = PackedStep(smaller, self.adam, cuda_graphs=self.stepper.cuda_graphs)


# ------------------------------------------------------------------------------------------- train


def train_pack(specs, callbacks: list[Callbacks] | None = None, *, resumes: list[bytes | None] | None = None,
               init_weights: list[dict | None] | None = None, data: list[Dataset | None] | None = None,
               cuda_graphs: bool = False, tf32: bool = False,
               attention: str = "fused") -> list[TrainResult | TrainingError]:
    """Train every spec of a pack, each as ``train(spec, callbacks[i], ...)`` would; returns, in the
    specs' order, each member's TrainResult, or the TrainingError it failed with (a member fails
    alone). Raises PackError, before anything runs, when the specs cannot share a pack.
    ``resumes``, ``init_weights``, ``data``: one entry (or None) per spec, as ``train``'s arguments
    of the same names. ``cuda_graphs``, ``tf32``: see core/ml/packed_step.py; ``attention``: see
    core/ml/packed.py."""
    check_packable(specs)
    M = len(specs)
    callbacks = list(callbacks) if callbacks else [Callbacks() for _ in specs]
    resumes, init_weights, data = (list(x) if x else [None] * M for x in (resumes, init_weights, data))
    if not len(callbacks) == len(resumes) == len(init_weights) == len(data) == M:
        raise PackError("pack: callbacks, resumes, init_weights and data need one entry per spec")
    built: dict = {}  # one dataset per distinct problem spec
    for i, d in enumerate(data):
        if d is None:
            if specs[i].problem not in built:
                built[specs[i].problem] = build_dataset(specs[i].problem)
            data[i] = built[specs[i].problem]
    rng_before = torch.get_rng_state()
    members = [member_from_spec(specs[i], callbacks[i], index=i, resume=resumes[i], init_weights=init_weights[i],
                                data=data[i]) for i in range(M)]
    torch.set_rng_state(rng_before)  # setting members up seeded the global generator: give it back
    precision = set_tf32(tf32)
    try:
        return _loop(Pack(members, cuda_graphs=cuda_graphs, attention=attention))
    finally:
        torch.set_float32_matmul_precision(precision)


def _loop(pack: Pack) -> list[TrainResult | TrainingError]:
    """The solo trainer's loop for every member of the pack, one tick per step."""
    results: dict[int, TrainResult | TrainingError] = {}
    read_every = 1 if pack.device.type == "cpu" else 64  # ticks between reads of the losses (a host sync)
    for row, m in enumerate(pack.members):
        if m.step == 0:
            m.final.update(_record(pack, row, 0))
        m.last_time, m.last_step = time.perf_counter(), m.step
        m.test_acc = m.final.get(metric_key("test", "seq_acc"))
        m.peaky = best_peaky(m.final)
    loss_sum = torch.zeros(len(pack.members), device=pack.device)  # [M], since the last read
    ticks = 0
    while pack.members:
        leaving = [row for row, m in enumerate(pack.members) if m.done or m.callbacks.should_stop()]
        for row in leaving:
            m = pack.members[row]
            if not m.done:  # stopped: the loss of the steps since its last report is recorded before it leaves
                m.loss_total, m.loss_count = m.loss_total + float(loss_sum[row]), m.loss_count + ticks
                if m.loss_count:
                    _report(m, time.perf_counter())
            m.callbacks.checkpoint(m.step, checkpoints.RESUME, pack.resume_checkpoint(row))
            results[m.index] = TrainResult(steps=m.step, stopped=not m.done, final_metrics=m.final)
        if leaving:
            keep = [row for row in range(len(pack.members)) if row not in leaving]
            pack.keep(keep)
            loss_sum = loss_sum[keep]
            continue
        loss_sum += pack.tick()
        ticks += 1
        now = time.perf_counter()
        recording = [row for row, m in enumerate(pack.members) if m.records_at(m.step)]
        if not (ticks % read_every == 0 or recording or now - pack.members[0].last_time >= 1.0):
            continue
        sums = loss_sum.tolist()  # the one host sync
        loss_sum.zero_()
        failed = []
        for row, (m, total) in enumerate(zip(pack.members, sums)):
            if not math.isfinite(total):
                failed.append(row)
                results[m.index] = TrainingError(f"loss became {total / ticks} at step {m.step}")
                continue
            m.loss_total, m.loss_count = m.loss_total + total, m.loss_count + ticks
            values = _record(pack, row, m.step) if row in recording else {}
            m.final.update(values)
            m.test_acc = values.get(metric_key("test", "seq_acc"), m.test_acc)
            m.peaky = best_peaky(values) or m.peaky
            if m.step % m.t.checkpoint_every == 0 and not m.done:
                m.callbacks.checkpoint(m.step, checkpoints.RESUME, pack.resume_checkpoint(row))
            if now - m.last_time >= 1.0 or m.done or values:
                _report(m, now)
        ticks = 0
        if failed:
            keep = [row for row in range(len(pack.members)) if row not in failed]
            pack.keep(keep)
            loss_sum = loss_sum[keep]
    return [results[i] for i in sorted(results)]


def _record(pack: Pack, row: int, step: int) -> dict[str, float]:
    """What the solo trainer records at ``step``: evaluation, snapshot and head scores, weights."""
    m = pack.members[row]
    t, cb = m.t, m.callbacks
    evaluating = step % t.eval_every == 0 or step == t.steps
    snapshotting = step % t.snapshot_every == 0 or step == t.steps
    if not (evaluating or snapshotting):
        return {}
    model = pack.model(row)
    if isinstance(cb, PackCallbacks):
        cb.model(step, model)
    return record_step(model, m.data, m.spec, pack.device, cb, step)


def _report(m, now: float) -> None:
    """Record member ``m``'s mean training loss since its last report, and its progress, at its step."""
    mean_loss, lr = m.loss_total / m.loss_count, lr_at(m.step, m.t)
    m.callbacks.metrics(m.step, {metric_key("train", "loss"): mean_loss, metric_key("train", "lr"): lr})
    rate = (m.step - m.last_step) / max(now - m.last_time, 1e-9)
    m.callbacks.progress(Progress(m.step, m.t.steps, mean_loss, rate, lr, m.test_acc, m.peaky))
    m.last_time, m.last_step, m.loss_total, m.loss_count = now, m.step, 0.0, 0
