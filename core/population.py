"""Populations: a seed set or a sweep grid read as distributions over its member runs (torch-free).

    data = seed_set(session, sweep_id=7)                           # bands over seeds, emergence, the seeds' table
    data = compare_sets(session, sweep_ids=[7, 9], threshold=0.99)  # steps to 0.99 accuracy per set, and the ratio
    runs = grid_members(session, sweep_id=4, score="peaky_abs")    # each run of a grid: cell, final figures, heads
    grid = grid_at(session, sweep_id=4, step=2000, score="peaky_abs")  # each cell run's figures at a step
    rows = list_sweeps(session)                                    # every sweep: kind, cells, status counts

A *seed set* is a sweep whose only stored axis is ``seed``; a sweep with other axes is a *grid*
whose cells the dashboard averages over seeds. Members are ordinary runs (``runs.sweep_id``,
``runs.sweep_cell``). A member's *circuit head* for a role is the one its summary names
(``core.summary.run_summary``: stored when the run finished, else derived from its metrics), so the
bands follow the same head the run page shows.

The statistics at each step use only the members that recorded a real value there: a NaN, a NULL
or a missing row leaves the member out of that step (``n`` says how many were counted); the std is
the population std (ddof 0). The database aggregates: the bands are one GROUP BY key, step over the
members' (run, key) rows, steps to a threshold one GROUP BY run, and the grid's "latest value at or before a
step" one MAX(step) GROUP BY run, key joined back to its rows, so 100 seeds x 100 steps or a
1,680-cell sweep cost a few queries that return what the page draws, not every row.

Bad input raises ``core.specs.errors.SpecError`` naming the field (``step`` beyond the last
snapshot, a seed set with no runs, a grid asked for as a seed set): the server answers 422. An
unknown sweep raises ``core.sweeps.SweepError``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core.db.models import Metric, Run, Snapshot, Status, Sweep
from core.names import HEADLINE_SCORE, PEAKY_ABS, PEAKY_THRES, ROLES, SEQ_ACC, TEST, metric_key, score_key
from core.specs.errors import SpecError
from core.summary import run_summary
from core.sweeps import SweepError

ACCURACY_KEY = metric_key(TEST, SEQ_ACC)  # test/seq_acc: the paper's accuracy, L = 4..max_len
BAND_SCORES = (PEAKY_THRES, PEAKY_ABS)  # the scores a seed set draws for each role's circuit head
THRESHOLD = 0.99  # steps to this test accuracy: the compare view's measure of compute
STATS = ("mean", "std", "min", "max", "q25", "median", "q75")


# ---------------------------------------------------------------- statistics (pure)

def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """``{"n", "mean", "std", "min", "max", "q25", "median", "q75"}`` of the real values (None: none).

    Plain Python, not numpy: a grid calls it once per cell and figure (5,000 times for 1,680 cells),
    where numpy's per-call overhead would dominate. Quantiles interpolate linearly, as numpy's default.
    """
    real = sorted(v for v in values if v is not None and not math.isnan(v))
    n = len(real)
    if n == 0:
        return {"n": 0, **{name: None for name in STATS}}
    mean = math.fsum(real) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in real) / n)
    return {"n": n, "mean": mean, "std": std, "min": real[0], "max": real[-1], "q25": _quantile(real, 0.25),
            "median": _quantile(real, 0.5), "q75": _quantile(real, 0.75)}


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---------------------------------------------------------------- members and their records

def _sweep(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise SweepError(f"no sweep {sweep_id}")
    return sweep


def is_seed_set(sweep: Sweep) -> bool:
    return set(sweep.axes or {}) == {"seed"}


def _members(session: Session, sweep: Sweep) -> list[Run]:
    """A seed set's runs, by seed; SpecError when it is a grid or has no runs yet."""
    if not is_seed_set(sweep):
        others = ", ".join(key for key in sweep.axes or {} if key != "seed") or "nothing"
        raise SpecError([("sweep_id", f"sweep {sweep.id} varies {others}, not only the seed: "
                                      f"open it as a grid at /sweeps/{sweep.id}")])
    runs = list(session.scalars(select(Run).where(Run.sweep_id == sweep.id).order_by(Run.id)))
    if not runs:
        raise SpecError([("sweep_id", f"seed set {sweep.id} has no runs yet (its sweep job has not expanded it)")])
    return sorted(runs, key=lambda run: ((run.sweep_cell or {}).get("seed", math.inf), run.id))


BAND_STATS = ("mean", "std", "min", "max")


def bands(session: Session, curves: dict[str, Sequence[tuple[int, str]]]) -> dict[str, dict[str, Any]]:
    """Per-step statistics over members, aggregated by the database, for several curves at once.

    ``curves`` maps a curve's name to its members' (run, key) pairs (each member's own circuit-head
    key); a key must belong to one curve only (score keys name their role and score, so they do).
    Returns, per curve, ``{"steps": [...], "n": [...], "mean": [...], "std": [...], "min": [...],
    "max": [...]}``, steps ascending over every step some member recorded; ``n`` counts the members
    with a real value there (NULL, the stored NaN, is left out by SQL's aggregates) and the
    statistics are None where it is 0. One query, GROUP BY key and step, whose WHERE is a
    ``key = k AND run_id IN (...)`` per distinct key, so it seeks the primary key: 100 seeds x 100
    steps x 5 curves return about a thousand rows, merged here by curve.
    """
    curve_of: dict[str, str] = {}
    runs_of: dict[str, set[int]] = defaultdict(set)
    for curve, pairs in curves.items():
        for run_id, key in pairs:
            curve_of[key] = curve
            runs_of[key].add(run_id)
    totals: dict[str, dict[int, list[float]]] = {curve: {} for curve in curves}  # step -> [n, sum, sum sq, min, max]
    if runs_of:
        value = Metric.value
        query = (select(Metric.key, Metric.step, func.count(value), func.sum(value), func.sum(value * value),
                        func.min(value), func.max(value))
                 .where(or_(*(and_(Metric.key == key, Metric.run_id.in_(sorted(ids))) for key, ids in runs_of.items())))
                 .group_by(Metric.key, Metric.step))
        for key, step, n, total, squares, low, high in session.execute(query):
            found = totals[curve_of[key]].get(step)
            if found is None:
                totals[curve_of[key]][step] = [n, total or 0.0, squares or 0.0, low, high]
                continue
            found[0] += n
            found[1] += total or 0.0
            found[2] += squares or 0.0
            found[3] = low if found[3] is None else found[3] if low is None else min(found[3], low)
            found[4] = high if found[4] is None else found[4] if high is None else max(found[4], high)
    out = {}
    for curve, by_step in totals.items():
        band: dict[str, Any] = {"steps": sorted(by_step), "n": [], **{name: [] for name in BAND_STATS}}
        for step in band["steps"]:
            n, total, squares, low, high = by_step[step]
            mean = total / n if n else None
            band["n"].append(n)
            band["mean"].append(mean)
            band["std"].append(math.sqrt(max(0.0, squares / n - mean * mean)) if n else None)
            band["min"].append(None if low is None else float(low))
            band["max"].append(None if high is None else float(high))
        out[curve] = band
    return out


def first_steps_at(session: Session, run_ids: Sequence[int], key: str, threshold: float) -> dict[int, int]:
    """Run -> the first step its ``key`` reached ``threshold`` (runs that never did are absent): one GROUP BY."""
    if not run_ids:
        return {}
    query = (select(Metric.run_id, func.min(Metric.step))
             .where(Metric.run_id.in_(list(run_ids)), Metric.key == key, Metric.value >= threshold)
             .group_by(Metric.run_id))
    return dict(session.execute(query).all())


def _head_key(summary: dict, role: str, score: str) -> str | None:
    head = (summary.get("heads") or {}).get(role)
    return None if head is None else score_key(role, score, head["layer"], head["head"])


def _member_row(run: Run, summary: dict, steps_to: int | None) -> dict[str, Any]:
    heads = summary.get("heads") or {}
    grades = [heads.get(role, {}).get("grade", "none") for role in ROLES]
    formed = "clear" if all(g == "clear" for g in grades) else "none" if all(g == "none" for g in grades) else "partial"
    return {"run_id": run.id, "name": run.name, "status": run.status, "seed": (run.sweep_cell or {}).get("seed"),
            "step": run.step, "total_steps": run.total_steps,
            "accuracy": ((summary.get("accuracy") or {}).get(TEST) or {}).get(SEQ_ACC),
            "heads": {role: {"label": info["label"], "grade": info.get("grade"),
                             "emerged_step": info.get("emerged_step"),
                             HEADLINE_SCORE: (info.get("scores") or {}).get(HEADLINE_SCORE)}
                      for role, info in heads.items()},
            "formed": formed, "verdict": summary.get("verdict", ""), "steps_to_threshold": steps_to}


FORMED_ORDER = {"clear": 0, "partial": 1, "none": 2}


def seed_set(session: Session, *, sweep_id: int, threshold: float = THRESHOLD) -> dict[str, Any]:
    """A seed set's bands, emergence steps and members (JSON-ready).

    ``curves``: ``{"accuracy": band, "eoi_locator/peaky_thres": band, ...}`` (``band``'s shape);
    ``emergence``: per role, the members' emergence steps and how many never emerged;
    ``members``: one row per seed, those that formed the whole circuit first, then partial, then
    none, each group by final accuracy (best first); ``steps_to_threshold``: ``spread`` of the
    first step each member reached ``threshold`` test accuracy (members that never did are counted
    in ``never``).
    """
    sweep = _sweep(session, sweep_id)
    runs = _members(session, sweep)
    summaries = {run.id: run_summary(session, run) for run in runs}
    pairs: dict[str, list[tuple[int, str]]] = {"accuracy": [(run.id, ACCURACY_KEY) for run in runs]}
    for role in ROLES:
        for score in BAND_SCORES:
            pairs[f"{role}/{score}"] = [(run.id, key) for run in runs
                                        if (key := _head_key(summaries[run.id], role, score)) is not None]
    curves = bands(session, pairs)
    first = first_steps_at(session, [run.id for run in runs], ACCURACY_KEY, threshold)
    steps_to = {run.id: first.get(run.id) for run in runs}
    emergence = {}
    for role in ROLES:
        steps = [((summaries[run.id].get("heads") or {}).get(role) or {}).get("emerged_step") for run in runs]
        emergence[role] = {"steps": sorted(s for s in steps if s is not None),
                           "never": sum(1 for s in steps if s is None), **spread(steps)}
    members = [_member_row(run, summaries[run.id], steps_to[run.id]) for run in runs]
    members.sort(key=lambda m: (FORMED_ORDER[m["formed"]], -(m["accuracy"] if m["accuracy"] is not None else -1),
                                m["seed"] if m["seed"] is not None else math.inf))
    reached = [s for s in steps_to.values() if s is not None]
    return {"id": sweep.id, "name": sweep.name, "preset": sweep.preset, "seeds": len(runs),
            "status": dict(Counter(run.status for run in runs)), "curves": curves, "emergence": emergence,
            "members": members, "threshold": threshold,
            "steps_to_threshold": {**spread(reached), "never": len(runs) - len(reached)},
            "formed": dict(Counter(m["formed"] for m in members))}


def compare_sets(session: Session, *, sweep_ids: Sequence[int], threshold: float = THRESHOLD) -> dict[str, Any]:
    """Two or more seed sets side by side: each set's ``seed_set`` and its steps to ``threshold``.

    ``ratios[i]`` is the first set's median steps-to-threshold over set i's (``10.0``: set i needs
    ten times fewer steps, the paper's "order of magnitude less compute"); None where a median is
    missing. SpecError (field ``sets``) for fewer than two distinct sets.
    """
    ids = list(dict.fromkeys(sweep_ids))
    if len(ids) < 2:
        raise SpecError([("sets", f"name two or more seed sets to compare (got {len(ids)})")])
    sets = []
    for sweep_id in ids:
        try:
            sets.append(seed_set(session, sweep_id=sweep_id, threshold=threshold))
        except SpecError as exc:  # name the field the request used
            raise SpecError([("sets", message) for _field, message in exc.errors]) from None
    reference = sets[0]["steps_to_threshold"]["median"]
    ratios = [None if reference is None or s["steps_to_threshold"]["median"] in (None, 0)
              else reference / s["steps_to_threshold"]["median"] for s in sets]
    return {"threshold": threshold, "sets": sets, "ratios": ratios}


# ---------------------------------------------------------------- grids through training

def snapshot_steps(session: Session, *, sweep_id: int) -> list[int]:
    """Every step at which some run of the sweep has a snapshot, ascending."""
    query = (select(Snapshot.step).join(Run, Run.id == Snapshot.run_id).where(Run.sweep_id == sweep_id)
             .distinct().order_by(Snapshot.step))
    return list(session.scalars(query))


def check_step(step: int | None, steps: Sequence[int]) -> None:
    """SpecError (field ``step``) when ``step`` lies beyond the last snapshot (or there is none)."""
    if step is None:
        return
    if not steps:
        raise SpecError([("step", f"no run of this sweep has a snapshot yet (asked for step {step})")])
    if step > steps[-1]:
        raise SpecError([("step", f"step {step} is beyond the last snapshot (step {steps[-1]})")])


def grid_members(session: Session, *, sweep_id: int, score: str = PEAKY_THRES) -> list[dict[str, Any]]:
    """Every run of the sweep, narrow, in id order: ``{"id", "name", "status", "step", "total_steps",
    "cell", "final": {"test_seq_acc", "eoi_locator", "iteration"}, "heads": {role: (layer, head)}}``.

    ``final`` is the run's summary's (the circuit heads' final ``score``). The database extracts
    those few numbers from each summary (a JSON path, on SQLite and PostgreSQL alike) instead of
    handing over 1,680 whole summaries to decode; a run with no stored summary yet (a live one)
    has it derived from its metrics (``run_summary``).
    """
    summary = Run.summary
    columns = [Run.id, Run.name, Run.status, Run.step, Run.total_steps, Run.sweep_cell,
               summary[("verdict",)].as_string(), summary[("accuracy", TEST, SEQ_ACC)].as_float()]
    for role in ROLES:
        columns += [summary[("heads", role, "layer")].as_integer(), summary[("heads", role, "head")].as_integer(),
                    summary[("heads", role, "scores", score)].as_float()]
    members = []
    for row in session.execute(select(*columns).where(Run.sweep_id == sweep_id).order_by(Run.id)):
        run_id, name, status, step, total, cell, verdict, accuracy, *heads = row
        final = {"test_seq_acc": accuracy}
        circuit: dict[str, tuple[int, int]] = {}
        if verdict is None:  # no summary stored yet: derive it, as the run page does
            derived = run_summary(session, session.get(Run, run_id))
            final["test_seq_acc"] = ((derived.get("accuracy") or {}).get(TEST) or {}).get(SEQ_ACC)
            for role in ROLES:
                head = (derived.get("heads") or {}).get(role)
                final[role] = None if head is None else (head.get("scores") or {}).get(score)
                if head is not None:
                    circuit[role] = (head["layer"], head["head"])
        else:
            for k, role in enumerate(ROLES):
                layer, head, value = heads[3 * k:3 * k + 3]
                final[role] = value
                if layer is not None and head is not None:
                    circuit[role] = (layer, head)
        members.append({"id": run_id, "name": name, "status": status, "step": step, "total_steps": total,
                        "cell": dict(cell or {}), "final": final, "heads": circuit})
    return members


def grid_at(session: Session, *, sweep_id: int, step: int, score: str = PEAKY_THRES,
            members: Sequence[dict[str, Any]] | None = None) -> dict[int, dict[str, float | None]]:
    """Each run of the sweep -> ``{"test_seq_acc", "eoi_locator", "iteration"}`` at ``step``: its
    latest value at or before the step (its circuit heads' ``score``), None where it recorded none.

    ``members``: ``grid_members(...)`` when the caller has it, else read here. The rows at exactly
    ``step`` are read first (the slider's steps are snapshot steps, where runs record); for what is
    still missing one SQL aggregate finds each (run, key)'s latest earlier step and a join reads it.
    """
    if members is None:
        members = grid_members(session, sweep_id=sweep_id, score=score)
    wanted: dict[int, dict[str, str]] = {}
    for member in members:
        wanted[member["id"]] = {"test_seq_acc": ACCURACY_KEY}
        for role, (layer, head) in member["heads"].items():
            wanted[member["id"]][role] = score_key(role, score, layer, head)
    keys = sorted({key for by_name in wanted.values() for key in by_name.values()})
    values: dict[tuple[int, str], float | None] = {}
    if keys:  # the slider's steps are snapshot steps, where every run records: read those rows directly
        exact = (select(Metric.run_id, Metric.key, Metric.value).join(Run, Run.id == Metric.run_id)
                 .where(Run.sweep_id == sweep_id, Metric.key.in_(keys), Metric.step == step))
        values = {(run_id, key): value for run_id, key, value in session.execute(exact)}
    missing = sorted({run_id for run_id, by_name in wanted.items()
                      if any((run_id, key) not in values for key in by_name.values())})
    if missing:  # the rest: each (run, key)'s latest step at or before ``step``, then its row
        latest = (select(Metric.run_id, Metric.key, func.max(Metric.step).label("step"))
                  .where(Metric.run_id.in_(missing), Metric.key.in_(keys), Metric.step < step)
                  .group_by(Metric.run_id, Metric.key).subquery())
        query = select(Metric.run_id, Metric.key, Metric.value).join(latest, and_(
            Metric.run_id == latest.c.run_id, Metric.key == latest.c.key, Metric.step == latest.c.step))
        for run_id, key, value in session.execute(query):
            values.setdefault((run_id, key), value)
    return {run_id: {name: values.get((run_id, by_name[name])) if name in by_name else None
                     for name in ("test_seq_acc", *ROLES)} for run_id, by_name in wanted.items()}


# ---------------------------------------------------------------- the sweeps index

def list_sweeps(session: Session, *, sweep_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Every sweep (or those of ``sweep_ids``), newest first: kind (``seed set`` or ``grid``), the
    grid's cell count, how many runs it made and how many are in each status (one GROUP BY)."""
    query = select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc())
    if sweep_ids is not None:
        query = query.where(Sweep.id.in_(sorted(sweep_ids)))
    sweeps = list(session.scalars(query))
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    if sweeps:
        grouped = (select(Run.sweep_id, Run.status, func.count()).where(Run.sweep_id.in_([s.id for s in sweeps]))
                   .group_by(Run.sweep_id, Run.status))
        for sweep_id, status, count in session.execute(grouped):
            counts[sweep_id][status] = count
    out = []
    for sweep in sweeps:
        cells = math.prod(len(values) for values in (sweep.axes or {}).values()) if sweep.axes else 0
        by_status = {status.value: counts[sweep.id].get(status.value, 0) for status in Status}
        out.append({"id": sweep.id, "name": sweep.name, "preset": sweep.preset, "axes": sweep.axes,
                    "kind": "seed set" if is_seed_set(sweep) else "grid", "cells": cells,
                    "runs": sum(by_status.values()), "status": by_status,
                    "created_at": sweep.created_at.isoformat() if sweep.created_at else None})
    return out
