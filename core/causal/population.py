"""One intervention on every member of a seed set or sweep, and its results as a distribution over members.

    with session_scope(engine) as session:
        queued = submit_population_intervention(session, sweep_id=7, body={"kind": "pattern", "variants": ["ideal"]})
    dispatch(settings, queued.job_ids)                         # after the commit, like any intervention job

    data = population_intervention_results(session, sweep_id=7)   # per member and per series, with spreads

The question it answers is the paper's across seeds: does the ideal-map patch keep accuracy on the
seeds whose EoI head is sharp, and fail on the others? So each member's intervened accuracy is put
next to its own circuit heads' peakiness at the step tested.

**Submitting.** ``body`` is an ``InterventionSpec`` (``core.causal.specs``) plus an optional
``skip_missing``. The spec is parsed once and then checked against *every* member
(``check_for_run``: its heads, steps and source run), since a grid's members may differ in shape; one
job per member is queued in the caller's one transaction, each tagged ``payload["population"] =
sweep_id``. Only the kinds on heads (ablate, edge, pattern) run on a population: they give one
accuracy per member, which is what a distribution is of. Nothing is queued when anything is wrong,
and the SpecError names the field:

- ``kind``: activation patching or a probe (run those per run);
- ``heads`` (or another field): what does not fit some members, naming them ("L9H9 is not a head
  of this run ..." for seeds 0, 3);
- ``sweep_id``: a sweep with no runs, or no member with any weights checkpoint yet;
- ``steps``: some members have no weights checkpoint at the requested step (or none yet). A
  distribution that silently lost members would mislead, so the whole request is refused, listing
  them; ``"skip_missing": true`` runs on the others instead and the answer says whom it skipped.

An unknown sweep raises ``core.sweeps.SweepError`` (the server's 404).

**Results.** Every stored evaluation of a member is grouped into *series* by (intervention, slot):
the slot is the target as asked (``L1H0``, ``L0H*``) when the spec named heads, and otherwise the
role whose circuit head was targeted (``eoi_locator``, ``iteration``; ``circuit`` for all of them
together), because each seed's circuit head may be another head. A series has one point per member
at its latest step tested (or at ``step``), with the intervened and baseline accuracy (the mean over
L = 4..max_len), and ``x``: the targeted head's peaky_thres and peaky_abs at that step (the member's
EoI locator's when several heads were targeted), beside every circuit head's. ``accuracy``,
``baseline`` and ``drop`` are ``core.population.spread`` over the points, and ``by_sharpness`` splits
the intervened accuracy at the 0.9 bar (``core.summary.EMERGED``) of ``x``'s peaky_thres. Torch-free.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.causal import results
from core.causal.kinds import KINDS
from core.causal.specs import AUTO, HEAD, InterventionSpec, check_for_run, parse_for_run
from core.db import crud, jobs
from core.db.models import Job, JobKind, Metric, Run, Status, Sweep
from core.names import (
    CHECKPOINT_WEIGHTS,
    EOI_LOCATOR,
    PEAKY_ABS,
    PEAKY_THRES,
    ROLE_SHORT,
    ROLE_TITLES,
    ROLES,
    parse_head_label,
    role_of_layer,
    score_key,
)
from core.population import is_seed_set, spread
from core.specs.errors import SpecError
from core.specs.sweep import cell_label
from core.summary import EMERGED, run_summary
from core.sweeps import SweepError

SKIP_MISSING = "skip_missing"  # the body's one key beside the InterventionSpec
CIRCUIT = "circuit"  # the slot of the circuit heads targeted together
POINT_SCORES = (PEAKY_THRES, PEAKY_ABS)
SHOWN_MEMBERS = 8  # members named in one error message; the rest are counted
SQL_INT_MAX = 2**31 - 1  # ids are SQL integers: a larger source_run is no run, and must not reach the driver


# ---------------------------------------------------------------- members

def members(session: Session, sweep_id: int) -> list[Run]:
    """The sweep's runs, by seed then id (a grid's by id); SweepError when there is no such sweep."""
    if session.get(Sweep, sweep_id) is None:
        raise SweepError(f"no sweep {sweep_id}")
    runs = list(session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))
    return sorted(runs, key=lambda run: ((run.sweep_cell or {}).get("seed", math.inf), run.id))


def member_name(run: Run) -> str:
    """``seed 3 (run 12)``, or a grid cell's ``d_model=32,seed=0 (run 12)``."""
    cell = dict(run.sweep_cell or {})
    if set(cell) == {"seed"}:
        return f"seed {cell['seed']} (run {run.id})"
    return f"{cell_label(cell)} (run {run.id})" if cell else f"run {run.id}"


def _names(runs: Sequence[Run]) -> str:
    shown = ", ".join(member_name(run) for run in runs[:SHOWN_MEMBERS])
    return shown + (f" and {len(runs) - SHOWN_MEMBERS} more" if len(runs) > SHOWN_MEMBERS else "")


# ---------------------------------------------------------------- submitting

@dataclass(frozen=True)
class PopulationQueued:
    sweep_id: int
    jobs: list[tuple[int, int]]  # (run id, job id), one per member queued: dispatch the job ids after the commit
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"run_id", "member", "reason"} (skip_missing)
    seed_set: bool = True  # False: a grid (its page is /sweeps/{id}, a seed set's /seed-sets/{id})

    @property
    def job_ids(self) -> list[int]:
        return [job_id for _, job_id in self.jobs]


def submit_population_intervention(session: Session, *, sweep_id: int, body: Any) -> PopulationQueued:
    """Validate ``body`` against every member of sweep ``sweep_id`` and queue one intervention job per
    member (flushed; the caller commits, then dispatches). SpecError naming the field, with nothing
    queued, on bad input; SweepError for no sweep."""
    runs = members(session, sweep_id)
    data = dict(body) if isinstance(body, Mapping) else body
    skip_missing = data.pop(SKIP_MISSING, False) if isinstance(data, dict) else False
    errors: list[tuple[str, str]] = []
    if not isinstance(skip_missing, bool):
        errors.append((SKIP_MISSING, f"must be true or false (got {skip_missing!r})"))
    try:
        spec = InterventionSpec.parse(data)
    except SpecError as exc:
        if runs:  # the per-run parser also names a head the first member lacks beside the bad values
            try:
                parse_for_run(data, run_spec=runs[0].spec or {}, weights_steps=[], summary=None)
            except SpecError as named:
                exc = named
        raise SpecError(errors + exc.errors) from None
    if not KINDS[spec.kind].on_heads:
        errors.append(("kind", f"a seed set or sweep runs ablate, edge or pattern (one accuracy per member); "
                               f"run {spec.kind} on each run's own page (got {spec.kind!r})"))
    if not runs:
        errors.append(("sweep_id", f"sweep {sweep_id} has no runs yet (its sweep job has not expanded it)"))
    if errors:
        raise SpecError(errors)

    known = spec.source_run is not None and spec.source_run <= SQL_INT_MAX  # a larger id names nothing
    source = crud.get_run(session, run_id=spec.source_run) if known else None
    refused: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))  # field -> message -> runs
    missing: list[tuple[Run, str]] = []  # members without the checkpoint asked for (or any): refused or skipped
    weights = {run.id: crud.checkpoint_steps(session, run_id=run.id, kind=CHECKPOINT_WEIGHTS) for run in runs}
    if not any(weights.values()):
        raise SpecError([("sweep_id", f"no member of sweep {sweep_id} has a weights checkpoint yet "
                                      f"({len(runs)} members: {_status_counts(runs)}); wait for them to train")])
    for run in runs:
        steps = weights[run.id]
        if not steps:  # not trained far enough to say anything else about it
            missing.append((run, "the run has no weights checkpoints yet"))
            continue
        try:
            check_for_run(spec, run_spec=run.spec or {}, weights_steps=steps, summary=run_summary(session, run),
                          source_spec=source.spec if source is not None else None)
        except SpecError as exc:
            for name, message in exc.errors:
                if name == "steps":
                    missing.append((run, message))
                else:
                    refused[name][message].append(run)
    for name, by_message in refused.items():
        errors.append((name, "; ".join(f"{_names(found)}: {message}" for message, found in by_message.items())))
    if errors:
        raise SpecError(errors)
    if missing and (not skip_missing or len(missing) == len(runs)):
        at = f"at step {spec.steps}" if isinstance(spec.steps, int) else "yet"
        others = len(runs) - len(missing)
        advice = f"; send \"{SKIP_MISSING}\": true to run on the other {others}" if others else ""
        raise SpecError([("steps", f"{len(missing)} of {len(runs)} members have no weights checkpoint {at}: "
                                   f"{_names([run for run, _ in missing])}{advice}")])
    skipped_ids = {run.id for run, _ in missing}
    spec_json = spec.model_dump(mode="json")
    queued = [(run.id, jobs.submit_intervention_job(session, run_id=run.id, spec=spec_json, population=sweep_id).id)
              for run in runs if run.id not in skipped_ids]
    skipped = [{"run_id": run.id, "member": member_name(run), "reason": message} for run, message in missing]
    return PopulationQueued(sweep_id=sweep_id, jobs=queued, skipped=skipped,
                            seed_set=is_seed_set(session.get(Sweep, sweep_id)))


def _status_counts(runs: Sequence[Run]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.status.lower()] += 1
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))


# ---------------------------------------------------------------- results

def slot_of(spec: Mapping[str, Any], intervention: str, target: str, circuit: Mapping[str, str]) -> str:
    """What a result is grouped by across members: the target as asked when the spec named heads,
    else the role whose circuit head it targeted (``circuit`` for them all together). ``circuit``
    maps each role to this member's circuit head label."""
    if spec.get("heads"):
        return target
    if "+" in target:
        return CIRCUIT
    roles = [role for role in ROLES if circuit.get(role) == target]
    by_label = [role for role in roles if f"/{ROLE_SHORT[role]}/" in f"{intervention}/"]
    return (by_label or roles or [target])[0]


def slot_title(slot: str) -> str:
    """``eoi_locator`` -> ``each member's EoI locator``; a head label stays itself."""
    if slot in ROLE_TITLES:
        return f"each member's {ROLE_TITLES[slot]}"
    return "each member's circuit heads together" if slot == CIRCUIT else slot


def _targeted(slot: str, spec: Mapping[str, Any], target: str, circuit_roles: Mapping[str, str]) -> tuple[str, str]:
    """(head label, role) whose peakiness is a point's x: the one head targeted, else the EoI locator."""
    if slot in ROLES:
        return target, slot
    if HEAD.match(target) and "*" not in target:
        layer, _ = parse_head_label(target)
        role = spec.get("role") or AUTO
        return target, role_of_layer(layer) if role == AUTO else role
    return circuit_roles.get(EOI_LOCATOR, ""), EOI_LOCATOR


def _scores(session: Session, wanted: set[tuple[int, str, int]]) -> dict[tuple[int, str, int], float | None]:
    """(run, score key, step) -> value, for the wanted triples, in one query."""
    if not wanted:
        return {}
    run_ids = sorted({run_id for run_id, _, _ in wanted})
    keys = sorted({key for _, key, _ in wanted})
    steps = sorted({step for _, _, step in wanted})
    query = select(Metric.run_id, Metric.key, Metric.step, Metric.value).where(
        Metric.run_id.in_(run_ids), Metric.key.in_(keys), Metric.step.in_(steps))
    return {(run_id, key, step): value for run_id, key, step, value in session.execute(query)}


def _head_scores(values, run_id: int, label: str, role: str, step: int) -> dict[str, Any]:
    if not label:
        return {"label": None, "role": role, **{score: None for score in POINT_SCORES}}
    layer, head = parse_head_label(label)
    return {"label": label, "role": role,
            **{score: values.get((run_id, score_key(role, score, layer, head), step)) for score in POINT_SCORES}}


def population_intervention_results(session: Session, *, sweep_id: int, step: int | None = None) -> dict[str, Any]:
    """Every member's evaluation results grouped into series, with their spreads (JSON-ready; see the
    module docstring). ``members``: each member's run, name, cell and status; ``jobs``: the population
    interventions' jobs, newest first. SweepError for no sweep."""
    runs = members(session, sweep_id)
    circuits: dict[int, dict[str, str]] = {}
    for run in runs:
        heads = run_summary(session, run).get("heads") or {}
        circuits[run.id] = {role: heads[role]["label"] for role in ROLES if role in heads}
    latest: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)  # series -> run -> its row
    for run in runs:
        for row in results.list_results(session, run_id=run.id, step=step):
            if "mean" not in row["result"] or "baseline" not in row["result"]:
                continue  # activation patching and probes: no accuracy to spread
            key = (row["intervention"], slot_of(row["spec"] or {}, row["intervention"], row["target"], circuits[run.id]))
            kept = latest[key].get(run.id)
            if kept is None or row["step"] > kept["step"]:
                latest[key][run.id] = row
    wanted: set[tuple[int, str, int]] = set()
    for (_, slot), rows in latest.items():
        for run_id, row in rows.items():
            label, role = _targeted(slot, row["spec"] or {}, row["target"], circuits[run_id])
            heads = [(label, role)] + [(circuits[run_id][r], r) for r in circuits[run_id]]
            for head, head_role in heads:
                if head:
                    layer, index = parse_head_label(head)
                    wanted |= {(run_id, score_key(head_role, score, layer, index), row["step"]) for score in POINT_SCORES}
    values = _scores(session, wanted)
    order = {run.id: i for i, run in enumerate(runs)}
    by_id = {run.id: run for run in runs}
    series = []
    for (intervention, slot), rows in sorted(latest.items()):
        points = []
        for run_id in sorted(rows, key=order.get):
            row, run = rows[run_id], by_id[run_id]
            label, role = _targeted(slot, row["spec"] or {}, row["target"], circuits[run_id])
            accuracy, baseline = row["result"]["mean"], row["result"]["baseline"].get("mean")
            points.append({"run_id": run_id, "member": member_name(run), "seed": (run.sweep_cell or {}).get("seed"),
                           "cell": dict(run.sweep_cell or {}), "step": row["step"], "target": row["target"],
                           "accuracy": accuracy, "baseline": baseline,
                           "drop": None if accuracy is None or baseline is None else baseline - accuracy,
                           "x": _head_scores(values, run_id, label, role, row["step"]),
                           "circuit": {r: _head_scores(values, run_id, head, r, row["step"])
                                       for r, head in circuits[run_id].items()}})
        sharp = [p["accuracy"] for p in points if (p["x"][PEAKY_THRES] or 0.0) >= EMERGED]
        soft = [p["accuracy"] for p in points if (p["x"][PEAKY_THRES] or 0.0) < EMERGED]
        series.append({"intervention": intervention, "slot": slot, "title": f"{intervention} @ {slot_title(slot)}",
                       "kind": intervention.split("/", 1)[0], "points": points,
                       "missing": [member_name(run) for run in runs if run.id not in rows],
                       **{name: spread(p[name] for p in points) for name in ("accuracy", "baseline", "drop")},
                       "by_sharpness": {"bar": EMERGED, "sharp": spread(sharp), "soft": spread(soft)}})
    return {"sweep_id": sweep_id, "step": step, "series": series,
            "members": [{"run_id": run.id, "member": member_name(run), "cell": dict(run.sweep_cell or {}),
                         "status": run.status, "circuit": circuits[run.id]} for run in runs],
            "jobs": population_jobs(session, sweep_id=sweep_id, run_ids=[run.id for run in runs])}


def population_jobs(session: Session, *, sweep_id: int, run_ids: Sequence[int], limit: int = 500) -> list[dict[str, Any]]:
    """The intervention jobs queued on this population (``payload["population"]``), newest first."""
    if not run_ids:
        return []
    query = (select(Job).where(Job.kind == JobKind.INTERVENE.value, Job.run_id.in_(list(run_ids)))
             .order_by(Job.id.desc()).limit(limit))
    return [{"id": job.id, "run_id": job.run_id, "status": job.status, "progress": job.progress or {},
             "error": job.error, "spec": (job.payload or {}).get("spec", {}),
             "live": job.status in (Status.QUEUED.value, Status.RUNNING.value)}
            for job in session.scalars(query) if (job.payload or {}).get("population") == sweep_id]
