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
its names (``plan``, the targets) are torch-free. What each kind does is ``core.causal.kinds.KINDS``;
this module only walks the steps and targets, and stores what the kinds return.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.causal import results
from core.causal.kinds import KINDS, Bench, InterventionError
from core.causal.specs import AUTO, InterventionSpec, parse_head, role_for
from core.db import crud
from core.db.models import Status
from core.db.session import session_scope
from core.names import CHECKPOINT_WEIGHTS, HEADLINE_SCORE, ROLES, TEST, head_label, score_key, score_prefix
from core.problems import build_dataset, figure_lengths
from core.specs.run import RunSpec
from core.summary import run_summary

Guard = Callable[[Session], None]


class Outcome(StrEnum):
    """How an intervention job's work ended.

    ``SUCCEEDED`` (equal to the job status ``SUCCEEDED``, which it is to be recorded as): every
    result is stored. ``STOPPED`` is no job status: ``should_stop`` ended the work early, the results
    stored so far are kept (a retry skips them), and the caller hands the job back to its queue.
    """

    SUCCEEDED = Status.SUCCEEDED.value
    STOPPED = "STOPPED"


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
        groups = [Target(((layer, head, spec.role if spec.role != AUTO else role),), head_label(layer, head))
                  for layer, head, role in found]
    if spec.together:
        heads = tuple(dict.fromkeys(h for group in groups for h in group.heads))
        groups = [Target(heads, "+".join(dict.fromkeys(group.label for group in groups)))]
    out: list[Target] = []  # one head may play both roles: act on it once per role only where the role matters
    for target in groups:
        if all(target.label != seen.label or (KINDS[spec.kind].by_role and target.roles != seen.roles) for seen in out):
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
        recorded = crud.checkpoint_steps(session, run_id=run_id, kind=CHECKPOINT_WEIGHTS)
        step = max(recorded) if step is None and recorded else step
        row = crud.get_checkpoint(session, run_id=run_id, step=step, kind=CHECKPOINT_WEIGHTS) if step is not None else None
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


def plan(spec: InterventionSpec, *, n_heads: int, summary: dict | None) -> list[tuple[str, Target | None]]:
    """(variant, target) of every result one step gives: a kind on heads runs each variant on each
    target; any other kind each variant once (its target label is the kind's own)."""
    if KINDS[spec.kind].on_heads:
        return [(variant, target) for target in targets(spec, n_heads=n_heads, summary=summary)
                for variant in spec.chosen_variants]
    return [(variant, None) for variant in spec.chosen_variants]


def _peaky(rows: list[tuple[str, int, float]], step: int, target: Target) -> dict[str, float | None]:
    values = {key: value for key, s, value in rows if s == step}
    return {head_label(layer, head): values.get(score_key(role, HEADLINE_SCORE, layer, head))
            for layer, head, role in target.heads}


def execute_intervention_job(engine: Engine, job_id: int, *, guard: Guard | None = None,
                             should_stop: Callable[[], bool] | None = None, device: str | None = None,
                             on_progress: Callable[[dict], None] | None = None) -> Outcome:
    """Run job ``job_id`` (kind ``intervene``); return ``Outcome.SUCCEEDED``, or ``Outcome.STOPPED``
    when ``should_stop`` ended it early (the caller hands the job back; its stored results are kept
    and skipped next time).

    ``on_progress`` receives ``{"done", "total", "eta_s"}`` (results, counting those already stored
    by an earlier attempt) once before the first result and after each one.

    It runs on the run spec's ``device``, else on ``device`` (the worker's), else on the cpu; a run
    trained on ``cuda`` and analysed with no worker device where there is no CUDA (``circuitboard
    intervene`` inline on a laptop) runs on the cpu."""
    import torch

    from core.ml import interventions as iv
    from core.ml.evaluate import teacher_forced
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
        recorded = crud.checkpoint_steps(session, run_id=run_id, kind=CHECKPOINT_WEIGHTS)
        done = results.done_keys(session, run_id=run_id, job_id=job_id)
        scores = crud.get_metrics(session, run_id=run_id, prefix=score_prefix())
    spec = InterventionSpec.parse(payload.get("spec", {}))
    kind = KINDS[spec.kind]
    steps = resolve_steps(spec, recorded)
    work = plan(spec, n_heads=run_spec.model.n_heads, summary=summary)
    spec_json = spec.model_dump(mode="json")

    data = build_dataset(run_spec.problem)
    tokens, lengths = data.split(TEST)
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

    total = len(steps) * len(work)
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

    def load_source():
        nonlocal source
        if source is None:
            source, _, _ = load_model(engine, spec.source_run, spec.source_step, device=device)
        return source

    for step in steps:
        bench = None  # the model at this step, loaded for the first result not stored yet
        baseline = None
        for variant, target in work:
            if should_stop():
                return Outcome.STOPPED
            if target is not None:
                roles = target.roles
                label = kind.label(spec, variant, next(iter(roles)) if len(roles) == 1 else None)
                target_label = target.label
            else:
                label, target_label = kind.label(spec, variant), kind.target(spec, p.max_len)
            if (step, label, target_label) in done:
                finished += 1
                continue
            if bench is None:
                model, _, _ = load_model(engine, run_id, step, device=device)
                bench = Bench(spec=spec, model=model, data=data, max_len=p.max_len, loss_on=loss_on, source=load_source)
            if kind.on_heads:
                if baseline is None:
                    baseline = evaluate(bench.model)
                result = {**evaluate(bench.model, kind.hooks(bench, variant, target)), "baseline": baseline,
                          HEADLINE_SCORE: _peaky(scores, step, target)}
            else:
                result = kind.measure(bench, variant, target_label)
            write(step, label, target_label, result)
            finished, written = finished + 1, written + 1
            progress()
    progress()  # a retry that found everything stored says so
    return Outcome.SUCCEEDED
