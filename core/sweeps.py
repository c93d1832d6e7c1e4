"""Sweeps: a grid of train runs, created as one sweep job and expanded by a worker; cancelled as one.

    with session_scope(engine) as session:
        created = create_sweep(session, spec=SweepSpec.parse(body), name="width x length", key=key)
    dispatch(settings, [created.job_id])      # when created.created: the same key again returns the earlier sweep

    with session_scope(engine) as session:
        cells = cancel_sweep(session, sweep_id=4)   # its unexpanded job and every cell's train job, one transaction

``create_sweep`` validates nothing itself (``SweepSpec.parse`` already checked every cell), inserts
the ``sweeps`` row (its flat base spec and axes, seeds stored as the axis ``seed``) and the sweep's
job. A worker executing that job calls :func:`expand_sweep`: one QUEUED run and train job per cell,
through ``core.submit.submit_run`` with the submit key ``sweep{id}:{cell}`` (hashed when too long), so expanding twice
(the sweep job re-run after a crash) adds nothing; the worker then dispatches the cells' jobs like
any other. :func:`sweep_cells` is the grid as the dashboard shows it: each cell with its run.

Exactly once. A submit ``key`` (``sweeps.idempotency_key``, unique) makes one sweep however often it
is sent: the same key with the same spec and axes returns the earlier sweep (``created=False``); with
another spec or axes it raises :class:`KeyReused`, since answering with a different grid than the one
asked for would be a lie.

Cancel. :func:`cancel_sweep` stamps ``sweeps.cancelled_at``, cancels the sweep's own job (at once
when QUEUED, flagged when RUNNING) and every cell's train job, in the caller's one transaction; an
expansion of a cancelled sweep adds nothing. Both take the sweep row's lock (FOR UPDATE on
PostgreSQL; SQLite's BEGIN IMMEDIATE serialises them anyway), after the sweep job's row (the order of
``core.db.jobs``: job rows first), so a cancel during an expansion either comes first (the expansion
then adds nothing) or waits for it to commit (and then cancels every run it made): either way no
cell trains after the cancel. Torch-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import jobs
from core.db.jobs import submit_sweep_job
from core.db.models import Job, JobKind, Run, Sweep, utcnow
from core.specs.errors import SpecError
from core.specs.sweep import SweepSpec, cell_label
from core.submit import KeyReused, submit_run


class SweepError(LookupError):
    """The sweep does not exist. (A submit key reused with another grid is ``core.submit.KeyReused``,
    as for runs: the API answers 409.)"""


@dataclass(frozen=True)
class CreatedSweep:
    sweep_id: int
    job_id: int  # the sweep job: dispatch it after the commit
    created: bool = True  # False: the submit key was seen before, and this is that earlier sweep


def create_sweep(session: Session, *, spec: SweepSpec, name: str | None = None, key: str | None = None) -> CreatedSweep:
    """Insert the sweep and its QUEUED sweep job (flushed; the caller commits, then dispatches).

    With a submit ``key`` already used, nothing is inserted: the earlier sweep comes back if it has the
    same spec and axes, else KeyReused. (Two racing inserts of one key: the loser's commit raises
    IntegrityError; calling again then finds the winner's.)
    """
    base, axes = spec.base(), spec.stored_axes()
    if key is not None:
        earlier = session.scalars(select(Sweep).where(Sweep.idempotency_key == key)).first()
        if earlier is not None:
            if (earlier.spec, earlier.axes) != (base, axes):
                raise KeyReused(f"idempotency_key {key!r} was used for sweep {earlier.id}, with another spec or axes; "
                                "use a new key for a new sweep")
            job = sweep_job(session, sweep_id=earlier.id)
            return CreatedSweep(sweep_id=earlier.id, job_id=job.id if job else 0, created=False)
    sweep = Sweep(name=name, preset=spec.preset, spec=base, axes=axes, idempotency_key=key)
    session.add(sweep)
    session.flush()
    job = submit_sweep_job(session, sweep_id=sweep.id, pack_size=spec.pack_size)
    return CreatedSweep(sweep_id=sweep.id, job_id=job.id)


def sweep_job(session: Session, *, sweep_id: int) -> Job | None:
    """The newest job that expands sweep ``sweep_id`` (sweep jobs have no run: ``payload["sweep_id"]`` names it).

    JSON queries differ by database, so SQL filters the kind and Python reads the payload.
    """
    query = select(Job).where(Job.kind == JobKind.SWEEP.value).order_by(Job.id.desc())
    return next((job for job in session.scalars(query) if (job.payload or {}).get("sweep_id") == sweep_id), None)


def cancel_sweep(session: Session, *, sweep_id: int) -> list[dict[str, Any]]:
    """Cancel sweep ``sweep_id`` and everything it queued; return its cells (``sweep_cells``) as they are now.

    The sweep job is cancelled first (QUEUED: at once; RUNNING: flagged, and its expansion, which
    re-reads the sweep under its lock, adds nothing), then the sweep is stamped cancelled, then every
    cell's train job is cancelled (QUEUED at once; a RUNNING one is flagged and its worker stops it).
    Flushed; the caller's scope commits. Cancelling again changes nothing. Raises SweepError when the
    sweep does not exist.
    """
    job = sweep_job(session, sweep_id=sweep_id)
    if job is not None:
        jobs.request_cancel(session, job_id=job.id)  # the job row's lock first, as everywhere
    sweep = _locked_sweep(session, sweep_id)
    if sweep.cancelled_at is None:
        sweep.cancelled_at = utcnow()
    for run_id in session.scalars(select(Run.id).where(Run.sweep_id == sweep_id).order_by(Run.id)).all():
        train = jobs.latest_train_job(session, run_id=run_id)
        if train is not None:
            jobs.request_cancel(session, job_id=train.id)
    session.flush()
    return sweep_cells(session, sweep_id=sweep_id)


def _locked_sweep(session: Session, sweep_id: int | None) -> Sweep:
    """The sweep row, locked for this transaction (FOR UPDATE; SQLite renders none) and read fresh."""
    query = select(Sweep).where(Sweep.id == sweep_id).with_for_update().execution_options(populate_existing=True)
    sweep = session.scalars(query).first() if sweep_id is not None else None
    if sweep is None:
        raise SweepError(f"no sweep {sweep_id}")
    return sweep


KEY_LENGTH = Run.__table__.c.idempotency_key.type.length  # 100: PostgreSQL refuses a longer key


def submit_key(sweep_id: int, cell: dict[str, Any]) -> str:
    """``sweep{id}:{cell label}``, or ``sweep{id}:sha256:{hex}`` of the label when that would not fit
    the column (long float axes and a seed): deterministic either way, so an expansion is idempotent."""
    key = f"sweep{sweep_id}:{cell_label(cell)}"
    if len(key) <= KEY_LENGTH:
        return key
    return f"sweep{sweep_id}:sha256:{hashlib.sha256(cell_label(cell).encode()).hexdigest()[:40]}"


def expand_sweep(session: Session, *, sweep_id: int, pack_size: int | None = None) -> list[int]:
    """Queue a run and train job for every cell that has none yet; return every cell's job id, in grid order.

    The cells' train jobs carry their pack key (and ``pack_size``, the sweep's choice of members per
    pack), so workers train compatible cells together (docs/packed.md, "Jobs run packs").

    A cancelled sweep expands nothing (``[]``). Raises SweepError when the sweep is gone, SpecError
    when a cell no longer validates (the spec rules changed since it was created).
    """
    sweep = _locked_sweep(session, sweep_id)  # a concurrent cancel_sweep waits for this transaction, or came first
    if sweep.cancelled_at is not None:
        return []
    job_ids = []
    for cell, run_spec in SweepSpec.from_stored(sweep.spec, sweep.axes).runs():
        label = cell_label(cell)
        queued = submit_run(session, spec=run_spec, name=f"{sweep.name or f'sweep {sweep.id}'} {label}",
                            preset=sweep.preset, key=submit_key(sweep.id, cell), tags=["sweep"],
                            sweep_id=sweep.id, sweep_cell=cell, pack_size=pack_size)
        job_ids.append(queued.job_id)
    return job_ids


def sweep_cells(session: Session, *, sweep_id: int) -> list[dict[str, Any]]:
    """Every cell of the grid, in order: ``{"cell", "label", "run": {"id", "status", "summary", ...} | None}``.

    ``run`` is None for a cell the sweep job has not expanded yet. Raises SweepError for an unknown sweep.
    """
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise SweepError(f"no sweep {sweep_id}")
    runs = {_same(run.sweep_cell or {}): run
            for run in session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id))}
    try:
        cells = SweepSpec.from_stored(sweep.spec, sweep.axes).cells()
    except SpecError:  # a stored grid that no longer parses: show the runs it made
        cells = [dict(run.sweep_cell or {}) for run in runs.values()]
    out = []
    for cell in cells:
        run = runs.get(_same(cell))
        out.append({"cell": cell, "label": cell_label(cell), "run": None if run is None else {
            "id": run.id, "name": run.name, "status": run.status, "step": run.step,
            "total_steps": run.total_steps, "summary": run.summary, "error": run.error}})
    return out


def _same(cell: dict[str, Any]) -> tuple:
    """A cell's identity whatever the order of its keys (PostgreSQL JSONB may reorder them)."""
    return tuple(sorted(cell.items()))
