"""The database source: a run's records read straight from the system of record (SQLite or PostgreSQL).

Every method opens one read-only session and returns plain data (dicts, lists, numpy arrays, bytes)
in exactly the shapes :mod:`core.notebook.http` returns from a server, so the client above them
cannot tell the two apart (``tests/server/test_notebook_http.py`` checks that, figure for figure).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from core import snapshots
from core.causal import results
from core.db import crud, jobs
from core.db.models import CheckpointKind, Run, Status
from core.db.session import make_engine, session_scope
from core.notebook.errors import NotebookError
from core.summary import causal_verdict, run_summary


class DatabaseSource:
    """Reads runs from a database URL (``sqlite:///circuitboard.db``, ``postgresql+psycopg://...``)."""

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise NotebookError(f"open: {url!r} is neither a database URL nor an http(s) server URL") from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            if not Path(parsed.database).is_file():  # SQLite would create an empty file: say so instead
                raise NotebookError(f"open: no database file at {parsed.database!r}")
        self.url = url
        self.engine = make_engine(parsed)

    def close(self) -> None:
        self.engine.dispose()

    def _read(self, fn):
        try:
            with session_scope(self.engine, readonly=True) as session:
                return fn(session)
        except (OperationalError, ProgrammingError) as exc:
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise NotebookError(f"cannot read {self.engine.url.render_as_string()}: {first} "
                                "(is it a circuitboard database? `circuitboard migrate` creates one)") from exc

    def _run(self, session, run_id: int) -> Run:
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            raise NotebookError(f"no run {run_id}")
        return run

    # ------------------------------------------------------------ runs

    def run_ids(self, *, status: str | None, problem: str | None, tag: str | None, text: str | None) -> list[int]:
        """Ids of the runs matching the filters, newest first (the dashboard's default order)."""
        filters = crud.run_filters(status=status, problem=problem, tag=tag, text=text)
        return self._read(lambda s: list(s.scalars(select(Run.id).where(*filters).order_by(Run.id.desc()))))

    def run(self, run_id: int) -> dict[str, Any]:
        """One run's record: the fields of ``GET /api/runs/{id}`` that a notebook reads."""
        def read(session):
            run = self._run(session, run_id)
            job = jobs.latest_train_job(session, run_id=run_id)
            failed = job is not None and job.status == Status.FAILED.value
            return {"id": run.id, "name": run.name, "status": run.status, "preset": run.preset,
                    "tags": list(run.tags or []), "notes": run.notes or "", "created_at": run.created_at,
                    "started_at": run.started_at, "finished_at": run.finished_at,
                    "spec": dict(run.spec or {}), "summary": run_summary(session, run),  # the API's: so far, until it ends
                    "error": run.error or (job.error if failed else None),
                    "parent_run_id": run.parent_run_id, "parent_step": run.parent_step, "sweep_id": run.sweep_id,
                    "snapshot_steps": crud.list_snapshot_steps(session, run_id=run_id),
                    "checkpoint_steps": crud.checkpoint_steps(session, run_id=run_id)}
        return self._read(read)

    # ------------------------------------------------------------ records

    def metrics(self, run_id: int, *, keys: list[str] | None, prefix: str | None) -> dict[str, tuple]:
        """{key: (steps int64 [n], values float64 [n])}, NaN where the value was NaN."""
        def read(session):
            self._run(session, run_id)
            return crud.get_metrics(session, run_id=run_id, keys=keys, prefix=prefix)
        grouped: dict[str, tuple[list, list]] = {}
        for key, step, value in self._read(read):
            steps, values = grouped.setdefault(key, ([], []))
            steps.append(step)
            values.append(value)
        return {key: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
                for key, (s, v) in grouped.items()}

    def snapshot(self, run_id: int, step: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(attention float32 [probe, layer, head, query, key], probe tokens [probe, W], lengths)."""
        def read(session):
            self._run(session, run_id)
            row = crud.get_snapshot(session, run_id=run_id, step=step)
            if row is None:
                raise NotebookError(f"run {run_id} has no snapshot at step {step}")
            probe_set = crud.get_probe_set(session, run_id=run_id)
            return row.data, row.layout, probe_set
        data, layout, probe_set = self._read(read)
        patterns = snapshots.unpack(data, layout)
        tokens = probe_set[0] if probe_set is not None else np.zeros(patterns.shape[:1] + patterns.shape[-1:], np.uint8)
        return patterns, tokens, [int(n) for n in layout["lengths"]]

    def checkpoint(self, run_id: int, step: int) -> bytes:
        """The checkpoint bytes at ``step``: its weights checkpoint, else its resume one (as the download route)."""
        def read(session):
            self._run(session, run_id)
            for kind in (CheckpointKind.WEIGHTS.value, CheckpointKind.RESUME.value):
                try:
                    row = crud.get_checkpoint(session, run_id=run_id, step=step, kind=kind)
                except crud.CorruptCheckpoint as exc:
                    raise NotebookError(str(exc)) from exc
                if row is not None:
                    return bytes(row.data)
            raise NotebookError(f"run {run_id} has no checkpoint at step {step}")
        return self._read(read)

    def interventions(self, run_id: int) -> dict[str, Any]:
        """What ``GET /api/runs/{id}/interventions`` answers: results grouped for charts, the circuit
        heads, the causal verdict and the run's intervention jobs."""
        def read(session):
            run = self._run(session, run_id)
            rows = results.list_results(session, run_id=run_id)
            summary = run_summary(session, run)
            recent = [{"id": job.id, "status": job.status, "progress": job.progress or {}, "error": job.error,
                       "spec": (job.payload or {}).get("spec", {})}
                      for job in jobs.intervention_jobs(session, run_id=run_id)]
            return {**results.for_charts(rows), "heads": summary.get("heads", {}),
                    "verdict": causal_verdict(summary, rows), "jobs": recent}
        return json.loads(json.dumps(self._read(read)))  # plain JSON values (lists, not tuples), as a server sends
