"""A sweep job whose sweep is cancelled while a worker holds it ends CANCELLED and expands nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db import jobs
from core.db.models import Run
from core.db.session import session_scope
from core.settings import Settings
from core.specs.sweep import SweepSpec
from core.sweeps import cancel_sweep, create_sweep
from tests.worker.support import FAST, job_row
from worker.execute import run_claimed


def test_a_sweep_cancelled_while_its_job_is_held_ends_cancelled_with_no_runs(engine):
    with session_scope(engine) as session:
        created = create_sweep(session, spec=SweepSpec.parse({"overrides": FAST, "seeds": [0, 1, 2]}), name="s")
    with session_scope(engine) as session:
        claim = jobs.claim(session, job_id=created.job_id, worker_id="w", lease_seconds=30)
    with session_scope(engine) as session:
        cancel_sweep(session, sweep_id=created.sweep_id)  # the job is RUNNING: flagged, not ended
    assert job_row(engine, created.job_id).status == "RUNNING"
    assert run_claimed(claim, engine=engine, settings=Settings()) == "CANCELLED"
    assert job_row(engine, created.job_id).status == "CANCELLED"
    with session_scope(engine, readonly=True) as session:
        assert session.scalar(select(func.count(Run.id)).where(Run.sweep_id == created.sweep_id)) == 0
