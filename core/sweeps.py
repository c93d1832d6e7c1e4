"""Sweeps: a grid of train runs, created as one sweep job and expanded by a worker.

    with session_scope(engine) as session:
        created = create_sweep(session, spec=SweepSpec.parse(body), name="width x length")
    dispatch(settings, [created.job_id])

``create_sweep`` validates nothing itself (``SweepSpec.parse`` already checked every cell), inserts
the ``sweeps`` row (its flat base spec and axes, seeds stored as the axis ``seed``) and the sweep's
job. A worker executing that job calls :func:`expand_sweep`: one QUEUED run and train job per cell,
through ``core.submit.submit_run`` with the submit key ``sweep{id}:{cell}`` (hashed when too long), so expanding twice
(the sweep job re-run after a crash) adds nothing; the worker then dispatches the cells' jobs like
any other. :func:`sweep_cells` is the grid as the dashboard shows it: each cell with its run.
Torch-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.jobs import submit_sweep_job
from core.db.models import Run, Sweep
from core.specs.errors import SpecError
from core.specs.sweep import SweepSpec, cell_label
from core.submit import submit_run


class SweepError(LookupError):
    """The sweep to expand does not exist."""


@dataclass(frozen=True)
class CreatedSweep:
    sweep_id: int
    job_id: int  # the sweep job: dispatch it after the commit


def create_sweep(session: Session, *, spec: SweepSpec, name: str | None = None) -> CreatedSweep:
    """Insert the sweep and its QUEUED sweep job (flushed; the caller commits, then dispatches)."""
    sweep = Sweep(name=name, preset=spec.preset, spec=spec.base(), axes=spec.stored_axes())
    session.add(sweep)
    session.flush()
    job = submit_sweep_job(session, sweep_id=sweep.id, pack_size=spec.pack_size)
    return CreatedSweep(sweep_id=sweep.id, job_id=job.id)


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

    Raises SweepError when the sweep is gone, SpecError when a cell no longer validates (the spec
    rules changed since it was created).
    """
    sweep = session.get(Sweep, sweep_id) if sweep_id is not None else None
    if sweep is None:
        raise SweepError(f"no sweep {sweep_id}")
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
