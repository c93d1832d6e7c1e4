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
  parameters: :class:`PackedAdam` is Adam over the stacked buffer with hyper-parameters per member;
- its step count: members may start at different steps (resumed) and stop at different ones.

The loss is the sum over members of each member's own mean loss, never divided by M, so member i's
gradient is its solo gradient. Everything a member reports leaves through its own
:class:`~core.ml.train.Callbacks`, in the solo formats: at its evaluation and snapshot steps the
member is copied into a solo ``Transformer`` and evaluated, snapshotted and scored by the solo code;
its resume checkpoints are solo resume checkpoints (a solo run resumes from them, and a pack resumes
from a solo one). A member whose loss is not finite fails alone, one whose ``should_stop()`` is true
stops alone; either leaves the pack, which shrinks and goes on with the rest.

On CUDA the step runs without host synchronisation (hyper-parameters reach the device by an
asynchronous copy, losses are summed on the device and read once a second or at record steps) and,
with ``cuda_graphs=True``, is replayed from a CUDA graph captured once per batch shape
(:class:`PackedStep`). TF32 matmuls are off unless ``tf32=True``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from core.ml import checkpoints
from core.ml.model import ModelConfig, Transformer
from core.ml.packed import PackedTransformer, shape_key
from core.ml.train import (
    Callbacks, Progress, TrainingError, TrainResult, batch_rows, best_peaky, build_model, evaluate,
    lr_at, make_optimizer, qk_scale_at, resolve_device, select_trainable, snapshot,
)
from core.names import metric_key
from core.problems import Dataset, build_dataset, supervised_mask

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which the solo run uses
EPS = 1e-8


class PackError(ValueError):
    """Specs that cannot share a pack; the message names the field that differs."""


class PackCallbacks(Callbacks):
    """A member's callbacks: the solo ones, plus the member's solo-shaped model at each record step."""

    def model(self, step: int, model: Transformer) -> None: ...


# ----------------------------------------------------------------------------------- compatibility

PACK_FIELDS = ("batch_size", "device")  # TrainSpec fields every member of a pack shares


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


# --------------------------------------------------------------------------------------- optimizer


class PackedAdam:
    """torch.optim.Adam / AdamW, single-tensor algorithm, over the pack's flat [M, P] buffer.

    Per member: learning rate (set each step), weight decay, coupled (Adam) or decoupled (AdamW)
    decay, and Adam's step count. Per entry: ``trains`` [M, P], False for a member's frozen
    parameters, which keep their values and zero moments, as the solo optimizer (which never sees
    them) leaves them. The update is a few whole-buffer operations whatever the number of
    parameters; the hyper-parameters live in one device tensor refreshed by an asynchronous copy."""

    def __init__(self, packed: PackedTransformer, trains: torch.Tensor, weight_decay: list[float],
                 decoupled: list[bool], steps: list[int]) -> None:
        self.flat, self.grad = packed.flat, packed.flat_grad  # [M, P]
        self.trains = trains  # [M, P] bool
        self.exp_avg = torch.zeros_like(self.flat)  # [M, P]
        self.exp_avg_sq = torch.zeros_like(self.flat)  # [M, P]
        self.weight_decay, self.decoupled, self.steps = list(weight_decay), list(decoupled), list(steps)
        self.hyper = torch.zeros(4, len(steps), 1, device=self.flat.device)  # step size, sqrt(bc2), l2, decay

    def set_lr(self, lrs: list[float]) -> None:
        """Advance every member's step count and load this step's hyper-parameters (float64 on the
        host, as the solo optimizer computes them, then one copy to the device)."""
        self.steps = [s + 1 for s in self.steps]
        rows = []
        for lr, wd, decoupled, step in zip(lrs, self.weight_decay, self.decoupled, self.steps):
            step_size = lr / (1 - BETAS[0] ** step)
            bc2_sqrt = (1 - BETAS[1] ** step) ** 0.5
            rows.append((step_size, bc2_sqrt, 0.0 if decoupled else wd, 1 - lr * wd if decoupled else 1.0))
        host = torch.tensor(rows, dtype=torch.float64).T.to(torch.float32)  # [4, M]
        self.hyper.copy_(host.view(4, -1, 1), non_blocking=True)

    def step(self) -> None:
        step_size, bc2_sqrt, l2, decay = self.hyper  # each [M, 1]
        grad = torch.where(self.trains, self.grad + l2 * self.flat, 0.0)  # [M, P]
        self.exp_avg.lerp_(grad, 1 - BETAS[0])
        self.exp_avg_sq.mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
        denom = (self.exp_avg_sq.sqrt() / bc2_sqrt).add_(EPS)
        updated = self.flat * decay - step_size * (self.exp_avg / denom)  # [M, P]
        self.flat.copy_(torch.where(self.trains, updated, self.flat))

    def keep(self, rows: list[int]) -> None:
        """Keep only these members (in this order), after the pack shrinks."""
        self.trains, self.exp_avg, self.exp_avg_sq = (t[rows] for t in (self.trains, self.exp_avg, self.exp_avg_sq))
        self.weight_decay = [self.weight_decay[i] for i in rows]
        self.decoupled = [self.decoupled[i] for i in rows]
        self.steps = [self.steps[i] for i in rows]
        self.hyper = torch.zeros(4, len(rows), 1, device=self.flat.device)


# -------------------------------------------------------------------------------------------- step


def member_losses(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits [M, B, T, V], targets and mask [M, B, T] -> [M]: each member's mean cross-entropy over
    its scored targets (the solo loss; a member with none scores 0, with a zero gradient)."""
    M, B, T, V = logits.shape
    ce = F.cross_entropy(logits.reshape(M * B * T, V), targets.reshape(-1), reduction="none").view(M, B, T)
    return torch.where(mask, ce, 0.0).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)  # [M]


class PackedStep:
    """One training step of the whole pack: forward, the summed loss, backward, optimizer.

    ``step(tokens [M, B, W], mask [M, B, W-1], scale [M, B, W-1, d] | None, first)`` returns the
    members' losses [M] (on the device, not synchronised). Eager everywhere; on CUDA with
    ``cuda_graphs`` the step is captured once per (width, first, dropout) shape and replayed from
    static buffers. Capture needs warm-up passes, which would train: the state is copied before
    and restored after, so the first replay is the first real step."""

    def __init__(self, packed: PackedTransformer, adam: PackedAdam, *, cuda_graphs: bool = False) -> None:
        self.packed, self.adam = packed, adam
        self.cuda_graphs = cuda_graphs and packed.flat.device.type == "cuda"
        self.graphs: dict[tuple, tuple] = {}
        self.pool = None

    def eager(self, tokens, mask, scale, first: int) -> torch.Tensor:
        logits = self.packed(tokens[:, :, :-1], first_output=first, dropout_scale=scale)  # [M, B, W-1-first, V]
        losses = member_losses(logits, tokens[:, :, 1 + first:], mask[:, :, first:])  # [M]
        self.packed.flat_grad.zero_()
        losses.sum().backward()  # the sum of the members' own means: each member's solo gradient
        self.adam.step()
        return losses.detach()

    def __call__(self, tokens, mask, scale, first: int) -> torch.Tensor:
        if not self.cuda_graphs:
            return self.eager(tokens, mask, scale, first)
        key = (tokens.shape, first, scale is None)
        if key not in self.graphs:
            self.graphs[key] = self._capture(tokens, mask, scale, first)
        graph, static_in, losses = self.graphs[key]
        for buffer, value in zip(static_in, (tokens, mask, scale)):
            if value is not None:
                buffer.copy_(value, non_blocking=True)
        graph.replay()
        return losses.clone()

    def _capture(self, tokens, mask, scale, first: int):
        state = [t.clone() for t in (self.adam.flat, self.adam.exp_avg, self.adam.exp_avg_sq)]
        static_in = [None if t is None else t.clone() for t in (tokens, mask, scale)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.eager(*static_in, first)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            losses = self.eager(*static_in, first)
        self.pool = graph.pool()
        for live, saved in zip((self.adam.flat, self.adam.exp_avg, self.adam.exp_avg_sq), state):
            live.copy_(saved)
        return graph, static_in, losses


def set_tf32(enabled: bool) -> str:
    """Allow TF32 matmuls on CUDA (or not: the default, for fidelity); returns the previous setting."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    return before


# ----------------------------------------------------------------------------------------- members


@dataclass
class Member:
    """One run of a pack: its spec, data, solo model, optimizer shell, generator and counters."""

    index: int  # its position in the specs given to train_pack
    spec: object
    callbacks: Callbacks
    data: Dataset
    model: Transformer  # solo-shaped: initialisation, then evaluation and checkpoints
    optimizer: torch.optim.Optimizer  # the solo optimizer over model's trainable parameters (for checkpoints)
    generator: torch.Generator  # the solo run's dropout randomness
    tokens: torch.Tensor  # [N, W] train rows on the device
    mask: torch.Tensor  # [N, W-1]
    lengths: np.ndarray  # [N] on the host: batch widths without a device sync
    step: int  # the last step trained
    final: dict
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


def _member(index, spec, callbacks, device, resume, init_weights, data) -> Member:
    """Set a member up exactly as ``train()`` sets up a solo run (same calls, same order)."""
    t = spec.train
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
        lengths=data.train_lengths.astype(np.int64), step=step, final={},
    )


def _adam_moments(member: Member, packed: PackedTransformer) -> tuple[torch.Tensor, ...]:
    """The solo optimizer's state as [P] columns of the pack: (exp_avg, exp_avg_sq, trains, step)."""
    P = packed.flat.shape[1]
    exp_avg, exp_avg_sq = torch.zeros(P), torch.zeros(P)
    trains = torch.zeros(P, dtype=torch.bool)
    names = {id(p): name for name, p in member.model.named_parameters()}
    step = 0
    for p in member.optimizer.param_groups[0]["params"]:
        cols = packed.columns[names[id(p)]]
        trains[cols] = True
        state = member.optimizer.state.get(p)
        if state:
            exp_avg[cols] = state["exp_avg"].reshape(-1).cpu()
            exp_avg_sq[cols] = state["exp_avg_sq"].reshape(-1).cpu()
            step = int(state["step"])
    return exp_avg, exp_avg_sq, trains, step


# ------------------------------------------------------------------------------------------- train


def train_pack(specs, callbacks: list[Callbacks] | None = None, *, resumes: list[bytes | None] | None = None,
               init_weights: list[dict | None] | None = None, data: list[Dataset | None] | None = None,
               cuda_graphs: bool = False, tf32: bool = False) -> list[TrainResult | TrainingError]:
    """Train every spec of a pack; returns, in the specs' order, each member's TrainResult, or the
    TrainingError it failed with (a member fails alone). Raises PackError before anything runs if
    the specs cannot share a pack. ``resumes``, ``init_weights``, ``data``: per member, as the solo
    ``train``'s arguments of the same names."""
    check_packable(specs)
    M = len(specs)
    callbacks = callbacks or [Callbacks() for _ in specs]
    resumes, init_weights, data = (list(x) if x else [None] * M for x in (resumes, init_weights, data))
    if not len(callbacks) == len(resumes) == len(init_weights) == len(data) == M:
        raise PackError("pack: callbacks, resumes, init_weights and data need one entry per spec")
    device = resolve_device(specs[0].train.device)
    built: dict = {}  # one dataset per distinct problem spec
    for i, d in enumerate(data):
        if d is None:
            if specs[i].problem not in built:
                built[specs[i].problem] = build_dataset(specs[i].problem)
            data[i] = built[specs[i].problem]
    rng_before = torch.get_rng_state()
    members = [_member(i, specs[i], callbacks[i], device, resumes[i], init_weights[i], data[i]) for i in range(M)]
    torch.set_rng_state(rng_before)  # setting members up seeded the global generator; give it back
    precision = set_tf32(tf32)
    try:
        return _train(members, device, cuda_graphs)
    finally:
        torch.set_float32_matmul_precision(precision)


def _train(members: list[Member], device: torch.device, cuda_graphs: bool) -> list[TrainResult | TrainingError]:
    packed = PackedTransformer.from_models([m.model for m in members], device)
    moments = [_adam_moments(m, packed) for m in members]
    adam = PackedAdam(packed, torch.stack([mo[2] for mo in moments]).to(device),
                      [m.t.weight_decay for m in members], [m.t.optimizer == "adamw" for m in members],
                      [mo[3] for mo in moments])
    adam.exp_avg.copy_(torch.stack([mo[0] for mo in moments]))
    adam.exp_avg_sq.copy_(torch.stack([mo[1] for mo in moments]))
    skip_untrained(packed, adam.trains)
    stepper = PackedStep(packed, adam, cuda_graphs=cuda_graphs)
    results: dict[int, TrainResult | TrainingError] = {}
    read_every = 1 if device.type == "cpu" else 64  # ticks between reads of the losses (a host sync)

    for i, m in enumerate(members):
        if m.step == 0:
            m.final.update(_record(m, packed, i, 0))
        m.last_time, m.last_step = time.perf_counter(), m.step
        m.test_acc = m.final.get(metric_key("test", "seq_acc"))
        m.peaky = best_peaky(m.final)
    packed.train()
    loss_sum = torch.zeros(len(members), device=device)  # [M], since the last read
    ticks = 0
    while members:
        leaving = {i for i, m in enumerate(members) if m.done or m.callbacks.should_stop()}
        if leaving:
            for i in sorted(leaving):
                m = members[i]
                _checkpoint(m, packed, adam, i, checkpoints.RESUME)
                results[m.index] = TrainResult(steps=m.step, stopped=not m.done, final_metrics=m.final)
            keep = [i for i in range(len(members)) if i not in leaving]
            members, packed, adam, stepper, loss_sum = _shrink(members, packed, adam, stepper, loss_sum, keep)
            continue
        for m in members:
            m.step += 1
        lrs = [lr_at(m.step, m.t) for m in members]
        packed.qk_scale.copy_(torch.tensor([qk_scale_at(m.step, m.t) for m in members]), non_blocking=True)
        adam.set_lr(lrs)
        tokens, mask, scale, first = _batch(members, packed)
        loss_sum += stepper(tokens, mask, scale, first)
        ticks += 1

        recording = [i for i, m in enumerate(members) if _records_at(m)]
        now = time.perf_counter()
        if not (ticks % read_every == 0 or recording or now - members[0].last_time >= 1.0
                or any(m.done for m in members)):
            continue
        sums = loss_sum.tolist()  # the one host sync
        loss_sum.zero_()
        failed = []
        for i, (m, total) in enumerate(zip(members, sums)):
            m.loss_total, m.loss_count = m.loss_total + total, m.loss_count + ticks
            if not math.isfinite(total):
                failed.append(i)
                results[m.index] = TrainingError(f"loss became {total / ticks} at step {m.step}")
                continue
            values = _record(m, packed, i, m.step) if i in recording else {}
            m.final.update(values)
            m.test_acc = values.get(metric_key("test", "seq_acc"), m.test_acc)
            m.peaky = best_peaky(values) or m.peaky
            if m.step % m.t.checkpoint_every == 0 and not m.done:
                _checkpoint(m, packed, adam, i, checkpoints.RESUME)
            if now - m.last_time >= 1.0 or m.done or values:
                mean_loss = m.loss_total / m.loss_count
                lr = lr_at(m.step, m.t)
                m.callbacks.metrics(m.step, {metric_key("train", "loss"): mean_loss, metric_key("train", "lr"): lr})
                m.callbacks.progress(Progress(m.step, m.t.steps, mean_loss, (m.step - m.last_step) / (now - m.last_time),
                                              lr, m.test_acc, m.peaky))
                m.last_time, m.last_step, m.loss_total, m.loss_count = now, m.step, 0.0, 0
        ticks = 0
        if failed:
            keep = [i for i in range(len(members)) if i not in failed]
            members, packed, adam, stepper, loss_sum = _shrink(members, packed, adam, stepper, loss_sum, keep)
    return [results[i] for i in sorted(results)]


def _records_at(m: Member) -> bool:
    return m.step % m.t.eval_every == 0 or m.step % m.t.snapshot_every == 0 or m.done \
        or m.step % m.t.checkpoint_every == 0


def _batch(members: list[Member], packed: PackedTransformer):
    """Every member's batch at its own step, padded to the pack's widest: tokens [M, B, W],
    mask [M, B, W-1] (False on the padding), dropout scale [M, B, W-1, d] or None, and the first
    scored position over all members. Padding lies after a member's own width (causal attention
    keeps it from reaching back) or before its first scored target (nothing reads those outputs)."""
    rows, widths, firsts = [], [], []
    for m in members:
        r = batch_rows(m.step, len(m.tokens), m.t.batch_size, shuffle=m.t.shuffle, seed=m.t.seed)
        lengths = m.lengths[r if isinstance(r, slice) else r.numpy()]
        widths.append(2 * int(lengths.max()) + 3 if m.t.loss_on == "cot" else m.data.width)
        firsts.append(int(lengths.min()) + 1)
        rows.append(r)
    W, first = max(widths), min(firsts)
    tokens = torch.stack([m.tokens[r, :W] for m, r in zip(members, rows)])  # [M, B, W]
    mask = torch.zeros(len(members), tokens.shape[1], W - 1, dtype=torch.bool, device=tokens.device)  # [M, B, W-1]
    for i, (m, r, w) in enumerate(zip(members, rows, widths)):
        mask[i, :, :w - 1] = m.mask[r, :w - 1]
    scale = None
    if any(m.spec.model.dropout > 0 for m in members):
        parts = []
        B, d = tokens.shape[1], packed.cfg.d_model
        for m, w in zip(members, widths):
            p = m.spec.model.dropout
            s = torch.ones(B, W - 1, d, device=tokens.device)  # [B, W-1, d]
            if p > 0:  # the solo EmbeddingDropout's draw, on the solo run's generator
                draw = torch.rand(B, w - 1, d, generator=m.generator, device=tokens.device)
                s[:, :w - 1] = (draw >= p).to(s.dtype).mul_(1.0 / (1.0 - p))
            parts.append(s)
        scale = torch.stack(parts)  # [M, B, W-1, d]
    return tokens, mask, scale, first


def _sync_member(m: Member, packed: PackedTransformer, row: int) -> Transformer:
    """Copy the member's current parameters into its solo model."""
    m.model.load_state_dict(packed.member_state_dict(row))
    m.model.qk_scale = qk_scale_at(m.step, m.t)
    return m.model


def _record(m: Member, packed: PackedTransformer, row: int, step: int) -> dict[str, float]:
    """What the solo trainer records at ``step``: evaluation, snapshot and head scores, weights."""
    t, cb = m.t, m.callbacks
    values: dict[str, float] = {}
    evaluating = step % t.eval_every == 0 or step == t.steps
    snapshotting = step % t.snapshot_every == 0 or step == t.steps
    if not (evaluating or snapshotting):
        return values
    model = _sync_member(m, packed, row)
    device = m.tokens.device
    if evaluating:
        values.update(evaluate(model, m.data, m.spec, device, full=step == t.steps))
    if snapshotting:
        blob, layout, scores = snapshot(model, m.data, m.spec, device)
        values.update(scores)
        cb.snapshot(step, blob, layout)
        cb.checkpoint(step, checkpoints.WEIGHTS, checkpoints.to_bytes(checkpoints.model_weights(model)))
    if isinstance(cb, PackCallbacks):
        cb.model(step, model)
    cb.metrics(step, values)
    return values


def _checkpoint(m: Member, packed: PackedTransformer, adam: PackedAdam, row: int, kind: str) -> None:
    """A solo resume checkpoint of the member: its model, its Adam state in torch's format, its step
    and its generator as the solo run's global one."""
    model = _sync_member(m, packed, row)
    names = {id(p): name for name, p in model.named_parameters()}
    for p in m.optimizer.param_groups[0]["params"]:
        cols = packed.columns[names[id(p)]]
        m.optimizer.state[p] = {
            "step": torch.tensor(float(adam.steps[row])),
            "exp_avg": adam.exp_avg[row, cols].view_as(p).clone(),
            "exp_avg_sq": adam.exp_avg_sq[row, cols].view_as(p).clone(),
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
    m.callbacks.checkpoint(m.step, kind, checkpoints.to_bytes(state))


def skip_untrained(packed: PackedTransformer, trains: torch.Tensor) -> None:
    """No gradient for a parameter that no member trains (a frozen table, ``trainable=mlp2``)."""
    for name, p in packed.params.items():
        p.requires_grad_(p.requires_grad and bool(trains[:, packed.columns[name]].any()))


def _shrink(members, packed, adam, stepper, loss_sum, keep: list[int]):
    """The pack without the members that left: the kept rows of every buffer, in a new pack."""
    members = [members[i] for i in keep]
    if not members:
        return members, packed, adam, stepper, loss_sum
    smaller = PackedTransformer(packed.cfg, len(keep), packed.flat.device)
    smaller.flat.copy_(packed.flat[keep])
    smaller.train(packed.training)
    adam.keep(keep)
    skip_untrained(smaller, adam.trains)
    adam.flat, adam.grad = smaller.flat, smaller.flat_grad
    stepper = PackedStep(smaller, adam, cuda_graphs=stepper.cuda_graphs)
    return members, smaller, adam, stepper, loss_sum[keep]
