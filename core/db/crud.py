"""Reading and writing records. Every helper takes the Session first, then keywords only.

Helpers flush but never commit: the caller's `session_scope` decides the transaction.
Writes that may repeat (metrics, snapshots, checkpoints, probe sets) are real upserts
(INSERT ... ON CONFLICT DO UPDATE on SQLite and PostgreSQL), so a retried or re-delivered
job overwrites its earlier rows instead of failing on a duplicate key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import String, Table, cast, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.db.arrays import pack, unpack
from core.db.models import (
    Checkpoint,
    CheckpointKind,
    Job,
    Metric,
    ProbeSet,
    Run,
    Snapshot,
    Status,
    utcnow,
)

log = logging.getLogger(__name__)

UPSERT_BATCH_ROWS = 1000


class RunNotFound(LookupError):
    """No run has the given id."""


class CorruptCheckpoint(Exception):
    """A checkpoint's bytes do not match its recorded sha256."""


# ---------------------------------------------------------------- runs


def create_run(
    session: Session,
    *,
    spec: dict[str, Any],
    name: str | None = None,
    preset: str | None = None,
    status: str = Status.QUEUED,
    parent_run_id: int | None = None,
    parent_step: int | None = None,
    sweep_id: int | None = None,
    total_steps: int | None = None,
    tags: Sequence[str] = (),
    notes: str = "",
) -> Run:
    """Insert a run for the flat `spec`; `total_steps` defaults to `spec["steps"]`."""
    run = Run(
        spec=dict(spec),
        name=name,
        preset=preset,
        status=Status(status).value,
        parent_run_id=parent_run_id,
        parent_step=parent_step,
        sweep_id=sweep_id,
        total_steps=int(spec.get("steps", 0)) if total_steps is None else total_steps,
        tags=list(tags),
        notes=notes,
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, *, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def run_filters(
    *,
    status: str | Sequence[str] | None = None,
    problem: str | None = None,
    sweep_id: int | None = None,
    tag: str | None = None,
    text: str | None = None,
    run_ids: Iterable[int] | None = None,
) -> list[Any]:
    """WHERE clauses selecting runs: the one filter builder of the CLI, the API and the pages.

    ``status``: one or several, in any case (a name that is no status matches nothing); ``tag``:
    one of the run's tags; ``text``: a substring of its name or notes, case-insensitive;
    ``run_ids``: only these runs (a share link's). None leaves a criterion out.
    """
    filters: list[Any] = []
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        filters.append(Run.status.in_([str(s).upper() for s in statuses]))
    if problem is not None:
        filters.append(Run.spec["problem"].as_string() == problem)
    if sweep_id is not None:
        filters.append(Run.sweep_id == sweep_id)
    if tag is not None:  # tags is a JSON list; its text holds the tag as a JSON string
        filters.append(cast(Run.tags, String).contains(json.dumps(tag), autoescape=True))
    if text is not None:
        text = text.strip()
        filters.append(or_(Run.name.icontains(text, autoescape=True), Run.notes.icontains(text, autoescape=True)))
    if run_ids is not None:
        filters.append(Run.id.in_(sorted(run_ids)))
    return filters


def list_runs(
    session: Session,
    *,
    status: str | Sequence[str] | None = None,
    problem: str | None = None,
    sweep_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Run]:
    """Runs newest first, optionally filtered by status(es), spec problem and sweep."""
    query = (
        select(Run)
        .where(*run_filters(status=status, problem=problem, sweep_id=sweep_id))
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def count_runs(
    session: Session,
    *,
    status: str | Sequence[str] | None = None,
    problem: str | None = None,
    sweep_id: int | None = None,
) -> int:
    """How many runs `list_runs` would page through with the same filters."""
    filters = run_filters(status=status, problem=problem, sweep_id=sweep_id)
    return session.scalar(select(func.count()).select_from(Run).where(*filters)) or 0


_RUN_FIELDS = frozenset(Run.__table__.columns.keys()) - {"id"}


def update_run(session: Session, *, run_id: int, **fields: Any) -> Run:
    """Set the given columns of a run; raises RunNotFound, or ValueError on a bad field/status."""
    unknown = set(fields) - _RUN_FIELDS
    if unknown:
        raise ValueError(f"unknown run fields: {sorted(unknown)}")
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFound(run_id)
    if "status" in fields:
        fields["status"] = Status(fields["status"]).value
    for field, value in fields.items():
        setattr(run, field, value)
    session.flush()
    return run


# ---------------------------------------------------------------- jobs (core.db.jobs writes them)


def get_job(session: Session, *, job_id: int) -> Job | None:
    return session.get(Job, job_id)


# ---------------------------------------------------------------- upserts


def _upsert(session: Session, table: Table, rows: list[dict[str, Any]], *, keys: Sequence[str]) -> None:
    """INSERT rows, updating the non-key columns of rows whose `keys` already exist."""
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    statement = insert(table)
    updates = {
        column.name: statement.excluded[column.name]
        for column in table.columns
        if column.name not in keys and not column.primary_key
    }
    statement = statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
    for start in range(0, len(rows), UPSERT_BATCH_ROWS):
        session.execute(statement, rows[start : start + UPSERT_BATCH_ROWS])


# ---------------------------------------------------------------- metrics


def upsert_metrics(
    session: Session, *, run_id: int, rows: Iterable[tuple[str, int, float | None]]
) -> int:
    """Write (key, step, value) rows; an existing (key, step) gets the new value.

    Repeats within `rows` keep the last value. NaN is stored as NULL (SQLite cannot store
    NaN) and read back as NaN. Returns the number of distinct (key, step) written.
    """
    latest: dict[tuple[str, int], float | None] = {}
    for key, step, value in rows:
        value = None if value is None or math.isnan(value) else float(value)
        latest[(str(key), int(step))] = value
    records = [
        {"run_id": run_id, "key": key, "step": step, "value": value}
        for (key, step), value in latest.items()
    ]
    _upsert(session, Metric.__table__, records, keys=("run_id", "key", "step"))
    return len(records)


def get_metrics(
    session: Session, *, run_id: int, keys: Sequence[str] | None = None, prefix: str | None = None
) -> list[tuple[str, int, float]]:
    """(key, step, value) rows of a run, filtered by keys and/or a literal key prefix.

    Ordered by key then step; keys compare by code point in Python, so the order does not
    depend on the database's collation.
    """
    query = select(Metric.key, Metric.step, Metric.value).where(Metric.run_id == run_id)
    if keys is not None:
        query = query.where(Metric.key.in_(list(keys)))
    if prefix is not None:
        query = query.where(Metric.key.startswith(prefix, autoescape=True))
    rows = [
        (key, step, math.nan if value is None else value)
        for key, step, value in session.execute(query)
    ]
    return sorted(rows, key=lambda row: (row[0], row[1]))


# ---------------------------------------------------------------- probe sets


def put_probe_set(
    session: Session, *, run_id: int, tokens: np.ndarray, lengths: np.ndarray
) -> None:
    """Store the run's probe set: tokens [N, W] (as uint8) and lengths [N] (as int16)."""
    tokens = np.asarray(tokens)
    lengths = np.asarray(lengths)
    if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
        raise ValueError(f"need tokens [N, W] and lengths [N], got {tokens.shape} and {lengths.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() > 255):
        raise ValueError("probe tokens must fit in uint8")
    row = {
        "run_id": run_id,
        "tokens": pack(tokens.astype(np.uint8)),
        "lengths": pack(lengths.astype(np.int16)),
        "shape": list(tokens.shape),
    }
    _upsert(session, ProbeSet.__table__, [row], keys=("run_id",))


def get_probe_set(session: Session, *, run_id: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(tokens [N, W] uint8, lengths [N] int16) of the run, or None when none was stored."""
    row = session.get(ProbeSet, run_id)
    if row is None:
        return None
    n, width = row.shape
    return unpack(row.tokens, np.uint8, (n, width)), unpack(row.lengths, np.int16, (n,))


# ---------------------------------------------------------------- snapshots


def put_snapshot(
    session: Session,
    *,
    run_id: int,
    step: int,
    data: bytes,
    shape: Sequence[int],
    layout: dict[str, Any],
) -> None:
    """Store (or replace) the packed attention maps of a run at `step`."""
    row = {
        "run_id": run_id,
        "step": step,
        "data": bytes(data),
        "shape": [int(n) for n in shape],
        "layout": dict(layout),
        "nbytes": len(data),
    }
    _upsert(session, Snapshot.__table__, [row], keys=("run_id", "step"))


def list_snapshot_steps(session: Session, *, run_id: int) -> list[int]:
    """Steps with a snapshot, ascending."""
    query = select(Snapshot.step).where(Snapshot.run_id == run_id).order_by(Snapshot.step)
    return list(session.scalars(query))


def get_snapshot(session: Session, *, run_id: int, step: int) -> Snapshot | None:
    """The snapshot row (data, shape, layout); unpack with core.db.arrays.unpack."""
    return session.get(Snapshot, (run_id, step))


# ---------------------------------------------------------------- checkpoints


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _intact(checkpoint: Checkpoint) -> bool:
    return sha256_hex(checkpoint.data) == checkpoint.sha256


def put_checkpoint(
    session: Session, *, run_id: int, step: int, kind: str, data: bytes
) -> Checkpoint:
    """Store (or replace) a checkpoint, recording its sha256 and size."""
    kind = CheckpointKind(kind).value
    row = {
        "run_id": run_id,
        "step": step,
        "kind": kind,
        "data": bytes(data),
        "sha256": sha256_hex(data),
        "nbytes": len(data),
        "created_at": utcnow(),
    }
    _upsert(session, Checkpoint.__table__, [row], keys=("run_id", "kind", "step"))
    query = select(Checkpoint).where(
        Checkpoint.run_id == run_id, Checkpoint.kind == kind, Checkpoint.step == step
    )
    return session.scalars(query.execution_options(populate_existing=True)).one()


def get_checkpoint(session: Session, *, run_id: int, step: int, kind: str) -> Checkpoint | None:
    """The checkpoint at exactly `step`, or None; raises CorruptCheckpoint on a sha256 mismatch."""
    query = select(Checkpoint).where(
        Checkpoint.run_id == run_id,
        Checkpoint.kind == CheckpointKind(kind).value,
        Checkpoint.step == step,
    )
    checkpoint = session.scalars(query).one_or_none()
    if checkpoint is not None and not _intact(checkpoint):
        raise CorruptCheckpoint(f"run {run_id} {kind} checkpoint at step {step}: sha256 mismatch")
    return checkpoint


def _steps_newest_first(session: Session, *, run_id: int, kind: str) -> list[tuple[int, int]]:
    """(id, step) of a run's checkpoints of `kind`, newest step first."""
    query = (
        select(Checkpoint.id, Checkpoint.step)
        .where(Checkpoint.run_id == run_id, Checkpoint.kind == CheckpointKind(kind).value)
        .order_by(Checkpoint.step.desc())
    )
    return [(id_, step) for id_, step in session.execute(query)]


def checkpoint_steps(session: Session, *, run_id: int, kind: str | None = None) -> list[int]:
    """Steps at which the run has a checkpoint (of ``kind``, or of any kind), ascending."""
    query = select(Checkpoint.step).where(Checkpoint.run_id == run_id).distinct().order_by(Checkpoint.step)
    if kind is not None:
        query = query.where(Checkpoint.kind == CheckpointKind(kind).value)
    return list(session.scalars(query))


def latest_checkpoint(session: Session, *, run_id: int, kind: str) -> Checkpoint | None:
    """The newest intact checkpoint of `kind`; corrupt ones are logged and skipped."""
    for checkpoint_id, step in _steps_newest_first(session, run_id=run_id, kind=kind):
        checkpoint = session.get(Checkpoint, checkpoint_id)
        if checkpoint is not None and _intact(checkpoint):
            return checkpoint
        log.warning("run %s %s checkpoint at step %s fails its sha256; skipping", run_id, kind, step)
    return None


def prune_checkpoints(session: Session, *, run_id: int, kind: str, keep: int) -> int:
    """Delete all but the newest `keep` checkpoints of `kind`; returns how many were deleted."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    doomed = [id_ for id_, _ in _steps_newest_first(session, run_id=run_id, kind=kind)[keep:]]
    if doomed:
        session.execute(
            delete(Checkpoint).where(Checkpoint.id.in_(doomed)).execution_options(synchronize_session="fetch")
        )
    return len(doomed)
