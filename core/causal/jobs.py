"""Running an intervention job: stored checkpoints in, one result row per (step, intervention, target) out.

``execute_intervention_job(engine, job_id, guard=..., should_stop=...)`` is what a worker's child
calls for a job of kind ``intervene`` (its payload: ``{"spec": InterventionSpec as a dict}``). For
each requested step it loads the run's ``weights`` checkpoint, rebuilds the dataset (core.problems,
deterministic from the run's spec) and the model, runs every variant on every target, and writes
each result through ``guard(session)`` first, in the same transaction, so a worker that lost its
lease writes nothing more (as ``core.recording.RunRecorder.write`` does). Results this job stored
already are skipped, so a retried job resumes where the last attempt stopped; a new job recomputes
and replaces an older job's results for the same key (its rows, seed or metric may differ).

Torch is imported inside the functions only: this module is imported by the worker's child, and
its names (``plan``, the targets) are torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.causal import results
from core.causal.specs import InterventionSpec, intervention_label, parse_head, role_for
from core.db import crud
from core.db.models import Status
from core.db.session import session_scope
from core.names import hook_name
from core.problems import ROLES, build_dataset, figure_lengths
from core.specs.run import RunSpec
from core.summary import run_summary

WEIGHTS = "weights"  # = core.ml.checkpoints.WEIGHTS, spelled here to stay torch-free
Guard = Callable[[Session], None]


class InterventionError(ValueError):
    """The job asks for something the run cannot give (a missing step, a head it lacks)."""


@dataclass(frozen=True)
class Target:
    """Heads acted on together, each with the role whose edge or ideal map it gets."""

    heads: tuple[tuple[int, int, str], ...]  # (layer, head, role)
    label: str  # as asked: "L1H3", "L0H*" (every head of layer 0), "L0H3+L1H3" (together)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(layer, head) for layer, head, _ in self.heads]

    @property
    def roles(self) -> set[str]:
        return {role for _, _, role in self.heads}


def circuit_heads(summary: dict | None) -> list[tuple[int, int, str]]:
    """The summary's best head per role, as (layer, head, role)."""
    heads = (summary or {}).get("heads", {})
    return [(heads[r]["layer"], heads[r]["head"], r) for r in ROLES if r in heads]


def targets(spec: InterventionSpec, *, n_heads: int, summary: dict | None) -> list[Target]:
    """The spec's heads (or the circuit heads) grouped into targets: one each, or one for all."""
    if spec.heads:
        groups = [Target(tuple((layer, head, role_for(spec, layer)) for layer, head in parse_head(label, n_heads)), label)
                  for label in spec.heads]
    else:
        found = circuit_heads(summary)
        if not found:
            raise InterventionError("heads: the run has no circuit heads in its summary yet; name heads, e.g. L1H0")
        groups = [Target(((layer, head, spec.role if spec.role != "auto" else role),), f"L{layer}H{head}")
                  for layer, head, role in found]
    if spec.together:
        heads = tuple(dict.fromkeys(h for group in groups for h in group.heads))
        groups = [Target(heads, "+".join(dict.fromkeys(group.label for group in groups)))]
    out: list[Target] = []  # one head may play both roles: act on it once per role only where the role matters
    for target in groups:
        if all(target.label != seen.label or (spec.kind != "ablate" and target.roles != seen.roles) for seen in out):
            out.append(target)
    return out


def resolve_steps(spec: InterventionSpec, recorded: list[int]) -> list[int]:
    if not recorded:
        raise InterventionError("steps: the run has no weights checkpoints yet")
    if spec.steps == "all":
        return sorted(recorded)
    if spec.steps == "last":
        return [max(recorded)]
    if spec.steps not in recorded:
        raise InterventionError(f"steps: no weights checkpoint at step {spec.steps}; recorded: {sorted(recorded)}")
    return [spec.steps]


def load_model(engine: Engine, run_id: int, step: int | None = None, *, device=None):
    """(model in eval mode, its RunSpec, the step) from a run's weights checkpoint (None: the last),
    on ``device`` (a torch.device; None: cpu)."""
    from core.ml import checkpoints
    from core.ml.model import ModelConfig, Transformer

    with session_scope(engine, readonly=True) as session:
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            raise InterventionError(f"no run {run_id}")
        spec = RunSpec.from_flat(run.spec)
        recorded = crud.checkpoint_steps(session, run_id=run_id, kind=WEIGHTS)
        step = max(recorded) if step is None and recorded else step
        row = crud.get_checkpoint(session, run_id=run_id, step=step, kind=WEIGHTS) if step is not None else None
        if row is None:
            raise InterventionError(f"run {run_id} has no weights checkpoint at step {step}; recorded: {recorded}")
        state = checkpoints.from_bytes(row.data)["model"]
    model = Transformer(ModelConfig.from_spec(spec))
    model.load_state_dict(state)
    if device is not None:
        model.to(device)
    return model.eval(), spec, step


def one_step(problem: str):
    """The problem's single step ``f(y_prev, x) -> y`` (vectorised), or None for a mixture. Every
    problem starts y_1 = x_1, so f(a, b) is the second state of the two-input sequence (a, b)."""
    from core.problems import Problem, get_problem

    found = get_problem(problem)
    if not isinstance(found, Problem):
        return None
    return lambda a, b: found.iterate(np.stack([np.asarray(a), np.asarray(b)], axis=1))[:, 1]


def _peaky(rows: list[tuple[str, int, float]], step: int, target: Target) -> dict[str, float | None]:
    values = {key: value for key, s, value in rows if s == step}
    return {f"L{layer}H{head}": values.get(f"score/{role}/peaky_thres/L{layer}H{head}")
            for layer, head, role in target.heads}


def execute_intervention_job(engine: Engine, job_id: int, *, guard: Guard | None = None,
                             should_stop: Callable[[], bool] | None = None, device: str | None = None,
                             on_progress: Callable[[dict], None] | None = None) -> str:
    """Run job ``job_id`` (kind ``intervene``); return SUCCEEDED, or RUNNING when ``should_stop`` ended it
    early (the caller hands the job back; its stored results are kept and skipped next time).

    ``on_progress`` receives ``{"done", "total", "eta_s"}`` (results, counting those already stored
    by an earlier attempt) once before the first result and after each one.

    It runs on the run spec's ``device``, else on ``device`` (the worker's), else on the cpu; a run
    trained on ``cuda`` and analysed with no worker device where there is no CUDA (``circuitboard
    intervene`` inline on a laptop) runs on the cpu."""
    import torch

    from core.ml import interventions as iv
    from core.ml.evaluate import teacher_forced
    from core.ml.patching import activation_patching, corrupt_rows
    from core.ml.probes import probe
    from core.ml.train import resolve_device

    guard = guard or (lambda session: None)
    should_stop = should_stop or (lambda: False)
    with session_scope(engine, readonly=True) as session:
        job = crud.get_job(session, job_id=job_id)
        if job is None:
            raise InterventionError(f"no job {job_id}")
        run_id, payload = job.run_id, dict(job.payload or {})
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            raise InterventionError(f"job {job_id}: no run {run_id}")
        run_spec = RunSpec.from_flat(run.spec)
        summary = run_summary(session, run)  # derived from its metrics while it still trains
        recorded = crud.checkpoint_steps(session, run_id=run_id, kind=WEIGHTS)
        done = results.done_keys(session, run_id=run_id, job_id=job_id)
        scores = crud.get_metrics(session, run_id=run_id, prefix="score/")
    spec = InterventionSpec.parse(payload.get("spec", {}))
    steps = resolve_steps(spec, recorded)
    plan = [(variant, target) for target in targets(spec, n_heads=run_spec.model.n_heads, summary=summary)
            for variant in spec.chosen_variants] if spec.kind in ("ablate", "edge", "pattern") else \
        [(variant, None) for variant in spec.chosen_variants]
    spec_json = spec.model_dump(mode="json")

    data = build_dataset(run_spec.problem)
    tokens, lengths = data.split("test")
    p, loss_on = run_spec.problem, run_spec.train.loss_on
    wanted = run_spec.train.device or device
    if device is None and wanted and wanted.startswith("cuda") and not torch.cuda.is_available():
        wanted = None  # the weights are portable; only a worker's own --device must be honoured
    device = resolve_device(wanted)
    lo, hi = figure_lengths(p.min_len, p.max_len)

    step_fn = one_step(run_spec.problem.problem)
    longest = tokens[lengths == p.max_len][:spec.rows_per_len]

    def evaluate(model, hooks_for=None) -> dict:
        acc = teacher_forced(model, tokens, lengths, loss_on=loss_on, device=device,
                             per_length=spec.rows_per_len, hooks_for=hooks_for)
        out = {"accuracy_by_length": {str(n): acc.seq_acc(n) for n in sorted(acc.rows)},
               "mean": acc.mean_seq_acc(lo, hi), "rows_per_len": min(acc.rows.values())}
        if step_fn is not None and len(longest):
            out["diagnosis"] = iv.diagnose(model, longest, p.max_len, step_fn, hooks_for)
        return out

    def write(step: int, label: str, target: str, result: dict) -> None:
        with session_scope(engine) as session:
            guard(session)
            results.put_result(session, run_id=run_id, job_id=job_id, step=step, intervention=label,
                               target=target, spec=spec_json, result=result)

    total = len(steps) * len(plan)
    finished = 0  # results written or found stored
    started = time.monotonic()
    written = 0  # results written by this attempt (the rate for the ETA)
    reported = -1  # the last "done" sent

    def progress() -> None:
        nonlocal reported
        if on_progress is not None and reported != finished:
            rate = written / (time.monotonic() - started) if written else 0.0
            on_progress({"done": finished, "total": total,
                         "eta_s": (total - finished) / rate if rate > 0 else None})
            reported = finished

    progress()
    source = None
    for step in steps:
        model = None
        baseline = None
        for variant, target in plan:
            if should_stop():
                return Status.RUNNING.value
            if target is not None:
                roles = target.roles
                label = intervention_label(spec, variant, next(iter(roles)) if len(roles) == 1 else None)
                target_label = target.label
            elif spec.kind == "activation_patch":
                label, target_label = intervention_label(spec, variant), f"len{spec.length or p.max_len}"
            else:
                label, target_label = intervention_label(spec, variant), hook_name(spec.layer, spec.site)
            if (step, label, target_label) in done:
                finished += 1
                continue
            if model is None:
                model, _, _ = load_model(engine, run_id, step, device=device)
                if spec.kind == "probe" and spec.layer >= model.cfg.n_layers:
                    raise InterventionError(f"layer: the model has {model.cfg.n_layers} layers (got {spec.layer})")
            if spec.kind == "activation_patch":
                length = spec.length or p.max_len
                clean = tokens[lengths == length][:spec.rows_per_len]
                if len(clean) == 0:
                    raise InterventionError(f"length: the test split has no rows of length {length}")
                corrupted = clean[corrupt_rows(np.full(len(clean), length), seed=spec.seed)]
                result = activation_patching(model, clean, corrupted, length, site=variant, metric=spec.metric,
                                             loss_on=loss_on).as_dict()
            elif spec.kind == "probe":
                keep = np.concatenate([np.flatnonzero(lengths == n)[:spec.rows_per_len] for n in np.unique(lengths)])
                (found,) = probe(model, tokens[keep], lengths[keep], target_label, [variant], seed=spec.seed)
                result = found.as_dict()
            else:
                if baseline is None:
                    baseline = evaluate(model)
                if spec.kind == "ablate":
                    fn = iv.ablate(model, target.pairs, variant, probe_tokens=data.probe_tokens,
                                   probe_lengths=data.probe_lengths, seed=spec.seed)
                elif spec.kind == "edge":
                    fn = iv.combine(*[iv.zero_edge(model, [(layer, head)], role, renorm=variant == "renorm")
                                      for layer, head, role in target.heads])
                elif variant == "run":
                    if source is None:
                        source, _, _ = load_model(engine, spec.source_run, spec.source_step, device=device)
                    fn = iv.patch_from_model(model, source, target.pairs)
                else:
                    fn = iv.patch_ideal(model, list(target.heads), shift=spec.shift if variant == "shift" else 0)
                result = {**evaluate(model, fn), "baseline": baseline, "peaky_thres": _peaky(scores, step, target)}
            write(step, label, target_label, result)
            finished, written = finished + 1, written + 1
            progress()
    progress()  # a retry that found everything stored says so
    return Status.SUCCEEDED.value
