"""PostgreSQL connections terminated under a running job: the run survives, without losing an attempt.

While a worker (``python -m worker.local``) trains, the test terminates every backend the worker
and its training child hold (``pg_terminate_backend``; they are told apart by ``PGAPPNAME``), idle
or mid-transaction, again and again. Pool pre-ping replaces the idle ones; a transaction cut off
mid-way is retried (``core.db.jobs.transact``); a heartbeat that fails is retried at the next beat.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from core.db import crud
from core.db.session import session_scope
from tests.worker.support import SLOW, events, job_row, new_job, run_row, wait_for, wait_status

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engine(postgres_database):
    from tests.conftest import fresh_schema
    from tests.worker.support import migrated

    with fresh_schema(postgres_database) as url:
        engine = migrated(url)
        yield engine
        engine.dispose()


APP = "circuitboard-test-worker"  # libpq's PGAPPNAME: the worker's and its child's connections carry it


def terminate_workers(admin) -> int:
    """Terminate every backend of the worker and its child; how many there were."""
    with admin.connect() as connection:
        return len(connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :app"),
            {"app": APP}).all())


def test_terminated_connections_cost_the_run_nothing(pg_engine, workers, postgres_database):
    spec = {**SLOW, "steps": 50}  # every step evaluated: long enough to cut the connections many times
    run_id, job_id = new_job(pg_engine, spec)
    worker = workers.start(pg_engine.url, env={"PGAPPNAME": APP})
    wait_for(lambda: run_row(pg_engine, run_id).step >= 2, timeout=40, interval=0.05, what="training to start")
    admin = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    terminated = []
    try:
        while job_row(pg_engine, job_id).status == "RUNNING" and len(terminated) < 40:
            terminated.append(terminate_workers(admin))
            time.sleep(0.15)
    finally:
        admin.dispose()
    job = wait_status(pg_engine, job_id, "SUCCEEDED", "FAILED", "QUEUED", timeout=40)
    assert job.status == "SUCCEEDED", (job.error, workers.log(worker)[-3000:])
    assert sum(terminated) >= 5, terminated  # connections really were cut, many times, mid-run
    assert job.attempt == 1 and [e["event"] for e in events(job)] == ["claimed", "finished"]
    with session_scope(pg_engine, readonly=True) as session:
        assert crud.get_run(session, run_id=run_id).status == "SUCCEEDED"
        steps = [step for key, step, _ in crud.get_metrics(session, run_id=run_id) if key == "test/seq_acc"]
        assert steps == list(range(spec["steps"] + 1))  # every evaluation recorded once
    assert workers.stop(worker) == 0
