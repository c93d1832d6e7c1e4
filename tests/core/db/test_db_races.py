"""Twenty concurrent retries, cancels and share revocations: exactly one makes the change (issue 16, item 5).

Each caller does what a route does: it opens a write transaction, loads the row (the route looks the
job up first), and then calls the crud function. On PostgreSQL all twenty have loaded the row before
any of them goes on (a barrier), so a decision made on that earlier copy instead of the locked row
would let many win; on SQLite the first statement of a write transaction takes the database's write
lock (BEGIN IMMEDIATE), so the callers line up before they load. "Makes the change" is counted in
SQL: the callers whose UPDATE statements changed a row of the table.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from core.db import crud, jobs, shares
from core.db.models import Share
from core.db.session import make_engine, session_scope
from core.settings import Settings

N = 20
SPEC = {"problem": "parity", "steps": 10, "d_model": 16}


@pytest.fixture
def racing(engine) -> Iterator[Engine]:
    """An engine with a connection for every caller."""
    pool = make_engine(engine.url, pool_size=N, max_overflow=0)
    yield pool
    pool.dispose()


@contextmanager
def updates_of(engine: Engine, table: str) -> Iterator[dict]:
    """Who changed ``table`` through ``engine``: ``writers``, the threads (one caller each) whose UPDATE
    changed a row, and ``rows``, how many rows their UPDATEs changed."""
    counts = {"writers": set(), "rows": 0}

    def count(_conn, cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith(f"UPDATE {table.upper()} ") and cursor.rowcount > 0:
            counts["writers"].add(threading.get_ident())
            counts["rows"] += cursor.rowcount

    event.listen(engine, "after_cursor_execute", count)
    try:
        yield counts
    finally:
        event.remove(engine, "after_cursor_execute", count)


def race(engine: Engine, load: Callable, act: Callable) -> list:
    """``act(session, loaded)`` by N threads at once, each after ``load(session)`` in the same transaction."""
    barrier = threading.Barrier(N, timeout=60)
    preload = engine.dialect.name == "postgresql"

    def one(_):
        if not preload:
            barrier.wait()
        with session_scope(engine) as session:
            loaded = load(session)
            if preload:
                barrier.wait()  # everyone holds a copy loaded before anyone's change
            return act(session, loaded)

    with ThreadPoolExecutor(N) as pool:
        return list(pool.map(one, range(N)))


def queued_job(engine: Engine) -> int:
    with session_scope(engine) as session:
        run = crud.create_run(session, spec=SPEC)
        return jobs.submit_train_job(session, run_id=run.id).id


def history(engine: Engine, job_id: int, name: str) -> list[dict]:
    with session_scope(engine, readonly=True) as session:
        return [e for e in jobs.get_job(session, job_id=job_id).payload["history"] if e["event"] == name]


def test_twenty_concurrent_retries_of_a_cancelled_job_have_one_winner(racing):
    job_id = queued_job(racing)
    with session_scope(racing) as session:
        assert jobs.request_cancel(session, job_id=job_id) == "CANCELLED"

    def retry(session, job):
        try:
            jobs.retry(session, job_id=job.id)
            return "retried"
        except ValueError as exc:
            return str(exc)

    with updates_of(racing, "jobs") as updates:
        outcomes = race(racing, lambda session: jobs.get_job(session, job_id=job_id), retry)
    assert outcomes.count("retried") == 1, outcomes
    assert outcomes.count(f"job {job_id} is QUEUED; only FAILED or CANCELLED jobs can be retried") == N - 1
    assert len(updates["writers"]) == 1
    assert len(history(racing, job_id, "retried")) == 1


def test_twenty_concurrent_cancels_make_one_change(racing):
    queued = queued_job(racing)
    with updates_of(racing, "jobs") as updates:
        outcomes = race(racing, lambda session: jobs.get_job(session, job_id=queued),
                        lambda session, job: jobs.request_cancel(session, job_id=job.id))
    assert outcomes == ["CANCELLED"] * N
    assert len(updates["writers"]) == 1 and len(history(racing, queued, "cancelled")) == 1

    running = queued_job(racing)
    with session_scope(racing) as session:
        assert jobs.claim(session, job_id=running, worker_id="w", lease_seconds=60) is not None
    with updates_of(racing, "jobs") as updates:
        outcomes = race(racing, lambda session: jobs.get_job(session, job_id=running),
                        lambda session, job: jobs.request_cancel(session, job_id=job.id))
    assert outcomes == ["RUNNING"] * N  # flagged for its worker, once
    assert len(updates["writers"]) == 1 and len(history(racing, running, "cancel requested")) == 1


def test_twenty_concurrent_revocations_of_a_share_revoke_it_once(racing):
    with session_scope(racing) as session:
        run_id = crud.create_run(session, spec=SPEC).id
        share_id = shares.create(session, kind="run", target={"run_ids": [run_id]})[0].id

    with updates_of(racing, "shares") as updates:
        seen = race(racing, lambda session: session.get(Share, share_id),
                    lambda session, share: shares.revoke(session, share_id=share.id).revoked_at)
    assert updates["rows"] == 1  # one revocation reached the table; the others found it revoked
    assert len(updates["writers"]) == 1
    with session_scope(racing, readonly=True) as session:
        revoked_at = session.get(Share, share_id).revoked_at
    assert revoked_at is not None and set(seen) == {revoked_at}  # every caller reads back the one time
    with session_scope(racing) as session:
        assert shares.revoke(session, share_id=share_id + 999) is None


def test_twenty_concurrent_retry_requests_answer_one_200_and_nineteen_409(engine):
    from server.main import create_app

    app = create_app(Settings(database_url=engine.url.render_as_string(hide_password=False)))
    job_id = queued_job(engine)
    with session_scope(engine) as session:
        run_id = jobs.get_job(session, job_id=job_id).run_id
        jobs.request_cancel(session, job_id=job_id)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.get("/").text  # sets the CSRF cookie; the page carries its token
        token = re.search(r'<meta name="csrf-token" content="([^"]*)"', page)
        headers = {"X-CSRF-Token": token[1]} if token and token[1] else {}
        barrier = threading.Barrier(N, timeout=60)

        def post(_):
            barrier.wait()
            return client.post(f"/api/runs/{run_id}/retry", headers=headers)

        with ThreadPoolExecutor(N) as pool:
            answers = list(pool.map(post, range(N)))
    app.state.engine.dispose()
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] + [409] * (N - 1), [answer.text for answer in answers if answer.status_code not in (200, 409)]
    assert len(history(engine, job_id, "retried")) == 1
