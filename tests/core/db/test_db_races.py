"""Twenty concurrent callers of retry, cancel and share revocation: exactly one wins, on both databases.

Each caller has its own session (its own pooled connection) and, like the API routes, has loaded the
row before it asks for the change, so a check that read that stale copy instead of the locked row
would let several callers through on PostgreSQL (SQLite's BEGIN IMMEDIATE serialises whole scopes).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from core.db import jobs, shares
from core.db.models import Job, Share
from core.db.session import make_engine, session_scope
from tests.worker.support import events, job_row, new_job, run_row

CALLERS = 20


def concurrently(engine, model, row_id, act):
    """``act(session)`` from CALLERS threads, each after loading row ``row_id`` in its own session."""
    postgres = engine.dialect.name == "postgresql"
    barrier = threading.Barrier(CALLERS) if postgres else None
    wide = make_engine(engine.url, pool_size=CALLERS) if postgres else engine  # a connection each

    def one(_):
        with session_scope(wide) as session:
            session.get(model, row_id)  # the copy a route holds before it acts
            if barrier is not None:
                barrier.wait(timeout=30)
            try:
                return act(session)
            except ValueError as exc:
                return exc

    try:
        with ThreadPoolExecutor(CALLERS) as pool:
            return list(pool.map(one, range(CALLERS)))
    finally:
        if wide is not engine:
            wide.dispose()


def cancelled_job(engine):
    run_id, job_id = new_job(engine)
    with session_scope(engine) as session:
        jobs.request_cancel(session, job_id=job_id)
    return run_id, job_id


def test_one_of_twenty_concurrent_retries_wins(engine):
    run_id, job_id = cancelled_job(engine)
    results = concurrently(engine, Job, job_id, lambda s: jobs.retry(s, job_id=job_id).status)
    assert results.count("QUEUED") == 1
    refusals = [r for r in results if isinstance(r, ValueError)]
    assert len(refusals) == CALLERS - 1
    assert all("is QUEUED; only FAILED or CANCELLED" in str(r) for r in refusals)
    assert len(events(job_row(engine, job_id), "retried")) == 1
    assert run_row(engine, run_id).status == "QUEUED"


def test_one_of_twenty_concurrent_cancels_cancels(engine):
    run_id, job_id = new_job(engine)
    results = concurrently(engine, Job, job_id, lambda s: jobs.request_cancel(s, job_id=job_id))
    assert results == ["CANCELLED"] * CALLERS
    assert len(events(job_row(engine, job_id), "cancelled")) == 1
    assert run_row(engine, run_id).status == "CANCELLED"


def test_one_of_twenty_concurrent_cancel_requests_flags_a_running_job(engine):
    _, job_id = new_job(engine)
    with session_scope(engine) as session:
        jobs.claim(session, job_id=job_id, worker_id="w1", lease_seconds=60)
    results = concurrently(engine, Job, job_id, lambda s: jobs.request_cancel(s, job_id=job_id))
    assert results == ["RUNNING"] * CALLERS
    assert len(events(job_row(engine, job_id), "cancel requested")) == 1


def test_one_of_twenty_concurrent_revocations_stamps_the_link(engine):
    with session_scope(engine) as session:
        share_id = shares.create(session, kind="run", target={"run_ids": [1]})[0].id
    results = concurrently(engine, Share, share_id, lambda s: shares.revoke(s, share_id=share_id).revoked_at)
    with session_scope(engine) as session:
        stamped = session.get(Share, share_id).revoked_at
    assert stamped is not None
    assert results == [stamped] * CALLERS  # every caller reports the one revocation that happened
