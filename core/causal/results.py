"""Stored intervention results (torch-free): write one, list a run's, group them for charts.

A result row is keyed (run, step, intervention, target) and upserted, so a retried job overwrites
what an earlier attempt wrote. ``result`` is JSON; for evaluations (ablate, edge, pattern) it holds

    {"accuracy_by_length": {"1": 1.0, ..}, "mean": 0.09,              # under the intervention
     "baseline": {"accuracy_by_length": {..}, "mean": 0.99},          # the same rows, untouched
     "peaky_thres": {"L1H3": 0.87}}                                  # the heads' correlational score

where ``mean`` averages L = 4..max_len as the paper's figures do; activation patching stores the
grid (``core.ml.patching.PatchingResult``) and probes their held-out accuracy and chance level.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.db.models import InterventionResult, utcnow
from core.names import HEADLINE_SCORE

KEY = ("run_id", "step", "intervention", "target")


def put_result(session: Session, *, run_id: int, step: int, intervention: str, target: str,
               spec: dict[str, Any], result: dict[str, Any], job_id: int | None = None) -> None:
    """Insert the result, or replace the one with the same (run, step, intervention, target)."""
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    row = {"run_id": run_id, "job_id": job_id, "step": step, "intervention": intervention, "target": target,
           "spec": spec, "result": result, "created_at": utcnow()}
    statement = insert(InterventionResult.__table__).values(row)
    updates = {name: statement.excluded[name] for name in ("job_id", "spec", "result", "created_at")}
    session.execute(statement.on_conflict_do_update(index_elements=list(KEY), set_=updates))


def list_results(session: Session, *, run_id: int, step: int | None = None,
                 intervention: str | None = None) -> list[dict[str, Any]]:
    """A run's results as dicts, ordered by intervention, target, step."""
    query = select(InterventionResult).where(InterventionResult.run_id == run_id)
    if step is not None:
        query = query.where(InterventionResult.step == step)
    if intervention is not None:
        query = query.where(InterventionResult.intervention == intervention)
    rows = session.scalars(query).all()
    out = [{"id": r.id, "run_id": r.run_id, "job_id": r.job_id, "step": r.step, "intervention": r.intervention,
            "target": r.target, "spec": r.spec, "result": r.result,
            "created_at": r.created_at.isoformat() if r.created_at else None} for r in rows]
    return sorted(out, key=lambda r: (r["intervention"], r["target"], r["step"]))


def done_keys(session: Session, *, run_id: int, job_id: int) -> set[tuple[int, str, str]]:
    """(step, intervention, target) of the results job ``job_id`` stored already: what its retry may skip.

    Only the job's own: another job with the same key may have asked for other rows, seed or metric,
    so a new job recomputes and replaces its results (``put_result`` upserts).
    """
    query = select(InterventionResult.step, InterventionResult.intervention, InterventionResult.target)
    query = query.where(InterventionResult.run_id == run_id, InterventionResult.job_id == job_id)
    return {tuple(row) for row in session.execute(query)}


def for_charts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Group results for the dashboard: one series per (intervention, target), points by step.

    ``{"steps": [...], "series": [{"intervention", "target", "kind", "points": [{"step", "mean",
    "baseline", "by_length", "baseline_by_length", "peaky_thres"}] or, for patching and probes,
    the stored result as "latest"}]}``.
    """
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(row["intervention"], row["target"])].append(row)
    series = []
    for (intervention, target), items in sorted(grouped.items()):
        items.sort(key=lambda r: r["step"])
        kind = intervention.split("/", 1)[0]
        entry: dict[str, Any] = {"intervention": intervention, "target": target, "kind": kind,
                                 "latest": {"step": items[-1]["step"], **items[-1]["result"]}}
        if "mean" in items[-1]["result"] and "baseline" in items[-1]["result"]:
            entry["points"] = [{"step": r["step"], "mean": r["result"].get("mean"),
                                "baseline": r["result"]["baseline"].get("mean"),
                                "by_length": r["result"].get("accuracy_by_length", {}),
                                "baseline_by_length": r["result"]["baseline"].get("accuracy_by_length", {}),
                                HEADLINE_SCORE: r["result"].get(HEADLINE_SCORE, {})} for r in items]
        series.append(entry)
    return {"steps": sorted({r["step"] for r in rows}), "series": series}
