"""Cancelling a sweep with real workers: nothing of it trains afterwards, whenever the cancel lands.

``stack`` (tests/worker/conftest.py) runs each test on both deployments: SQLite with
``python -m worker.local``, and PostgreSQL with a private Redis and a real Celery worker. The sweep
is cancelled as the API and the CLI do it (``core.sweeps.cancel_sweep``, one transaction):

- before its job was expanded (the job published, no worker up yet): the job ends CANCELLED, no
  run is ever made, and a worker started afterwards trains nothing;
- the moment a worker claims its job (in the middle of the expansion or just before it), or the
  moment its runs appear (cells being claimed and started): either no run is made or all of them
  are, every one ends CANCELLED without finishing, no training process is left, and nothing changes
  afterwards.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from core.db import jobs
from core.db.models import Job, Run
from core.db.session import session_scope
from core.specs.sweep import SweepSpec
from core.submit import dispatch
from core.sweeps import cancel_sweep, create_sweep
from tests.worker.support import SLOW, job_row, started, training_children, wait_for

LONG = {**SLOW, "steps": 200}  # minutes of evaluation at every step: no cell can finish during a test
GRID = {"overrides": LONG, "axes": {"d_model": [16, 24, 32, 40], "max_len": [2, 3]}, "seeds": [0, 1, 2, 3]}  # 32 cells


def sweep_state(engine, sweep_id: int) -> list[tuple]:
    """(run id, run status, step, its train job's status) of every run the sweep made."""
    with session_scope(engine, readonly=True) as session:
        runs = session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)).all()
        return [(run.id, run.status, run.step, jobs.latest_train_job(session, run_id=run.id).status) for run in runs]


def queue_sweep(stack, key: str):
    with session_scope(stack.engine) as session:
        created = create_sweep(session, spec=SweepSpec.parse(GRID), name="cancelled", key=key)
    dispatch(stack.settings, [created.job_id])  # published to Celery at once; the local worker polls
    return created


def cancel(stack, sweep_id: int) -> list[dict]:
    with session_scope(stack.engine) as session:
        return cancel_sweep(session, sweep_id=sweep_id)


def test_a_sweep_cancelled_before_expansion_never_makes_a_run(stack, workers):
    created = queue_sweep(stack, "before")
    cells = cancel(stack, created.sweep_id)
    assert len(cells) == 32 and all(cell["run"] is None for cell in cells)
    assert job_row(stack.engine, created.job_id).status == "CANCELLED"

    worker = started(stack, workers)  # its message is still in Redis (Celery); the local worker polls the table
    time.sleep(4)  # > the 2 s re-publish period of the Celery tests and many local polls
    assert sweep_state(stack.engine, created.sweep_id) == [], workers.log(worker)[-2000:]
    assert job_row(stack.engine, created.job_id).status == "CANCELLED"
    assert training_children(workers.tag) == []
    assert workers.stop(worker, timeout=30) == 0


@pytest.mark.parametrize("moment", ["claimed", "expanded"])
def test_a_sweep_cancelled_as_its_job_runs_trains_nothing_afterwards(stack, workers, moment):
    worker = started(stack, workers)
    created = queue_sweep(stack, moment)

    def reached() -> bool:  # "claimed": the expansion is under way or about to be; "expanded": its runs exist
        with session_scope(stack.engine, readonly=True) as session:
            if moment == "expanded":
                return session.scalar(select(Run.id).where(Run.sweep_id == created.sweep_id).limit(1)) is not None
            return session.scalar(select(Job.status).where(Job.id == created.job_id)) != "QUEUED"

    wait_for(reached, timeout=30, interval=0.005, what=f"the sweep job to be {moment}")
    cells = cancel(stack, created.sweep_id)  # during the expansion's transaction, or just after it committed

    made = sweep_state(stack.engine, created.sweep_id)
    assert len(made) in (0, 32), f"a partial expansion: {len(made)} runs"  # one transaction, never half
    assert [cell["run"] is None for cell in cells] == [len(made) == 0] * 32

    def settled() -> tuple[bool, list[tuple]]:
        state = sweep_state(stack.engine, created.sweep_id)
        sweep_job = job_row(stack.engine, created.job_id).status
        ended = sweep_job in ("SUCCEEDED", "CANCELLED") and all(job == "CANCELLED" for *_, job in state)
        return ended and not training_children(workers.tag), state

    _, state = wait_for(lambda: (found := settled())[0] and found, timeout=60, interval=0.2,
                        what="the sweep job and every cell to end, and no training process to be left")
    print(f"{stack.kind}, {moment}: the cancel found {len(made)} runs made")  # which side of the expansion it landed on
    if made:
        assert all(status == "CANCELLED" and step < LONG["steps"] for _, status, step, _ in state)
    time.sleep(3)  # afterwards nothing moves: no run is claimed again, no step is added
    assert sweep_state(stack.engine, created.sweep_id) == state
    assert training_children(workers.tag) == []
    assert job_row(stack.engine, created.job_id).status in ("SUCCEEDED", "CANCELLED")
    assert workers.stop(worker, timeout=30) == 0
