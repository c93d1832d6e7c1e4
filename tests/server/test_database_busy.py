"""A busy or unreachable database is a 503 with one sentence and Retry-After, never a 500 (issue 16 item 2).

SQLite: another connection holds the write lock past the busy timeout (shortened here from 30 s to
0.3 s, so the test waits a moment, not half a minute); every write answers 503, nothing half-done
stays behind, and the same request succeeds once the lock is gone. A database that cannot be reached
(a PostgreSQL server refusing connections, an SQLite file that cannot be opened) is the same 503,
reads included.
"""

from __future__ import annotations

import sqlite3

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.db import session as db_session
from core.db.models import Run
from core.db.session import make_engine, session_scope, upgrade
from core.settings import Settings
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.server.conftest import FAST, page_csrf


@pytest.fixture
def locked_app(tmp_path, monkeypatch):
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "busy.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        run_id = submit_run(session, spec=RunSpec.from_flat(FAST), name="existing").run_id
    engine.dispose()
    from server.main import create_app

    app = create_app(Settings(database_url=url))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        csrf = {"X-CSRF-Token": page_csrf(client.get("/").text)}
        yield client, csrf, path, run_id, app
    app.state.engine.dispose()


def count_runs(app) -> int:
    with session_scope(app.state.engine, readonly=True) as session:
        return session.scalar(select(func.count()).select_from(Run))


def test_a_locked_sqlite_database_is_503_with_retry_after_and_nothing_half_done(locked_app):
    client, csrf, path, run_id, app = locked_app
    before = count_runs(app)
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # the write lock, held past the app's busy timeout
    try:
        writes = [
            client.post("/api/runs", json={"preset": "fast-parity", "idempotency_key": "busy-1"}, headers=csrf),
            client.post("/api/shares", json={"kind": "run", "run_ids": [run_id]}, headers=csrf),
            client.post(f"/api/runs/{run_id}/shares", json={"label": "x"}, headers=csrf),
            client.post(f"/api/runs/{run_id}/cancel", headers=csrf),
        ]
        for response in writes:
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            assert "busy or unreachable" in response.json()["detail"]
        page = client.post("/runs/new", data={"csrf_token": csrf["X-CSRF-Token"], "preset": "fast-parity",
                                              **{key: str(value) for key, value in FAST.items()}})
        assert page.status_code == 503 and "busy" in page.text and "Retry-After" in page.headers
        assert client.get(f"/api/runs/{run_id}").status_code == 200  # WAL: readers are not blocked by a writer
    finally:
        holder.rollback() if holder.in_transaction else None
        holder.close()
    assert count_runs(app) == before  # nothing was half-written
    again = client.post("/api/runs", json={"preset": "fast-parity", "idempotency_key": "busy-1"}, headers=csrf)
    assert again.status_code == 201 and count_runs(app) == before + 1  # the same request, sent again, works


def test_an_unreachable_database_is_503_for_reads_and_writes(app, app_client, csrf, served_url, tmp_path):
    real = app.state.engine
    if served_url.get_backend_name() == "postgresql":
        gone = make_engine(served_url.set(port=1), pool_pre_ping=False)  # nothing listens on port 1
    else:
        gone = make_engine(f"sqlite:///{tmp_path / 'no such folder' / 'circuitboard.db'}")  # cannot be opened
    app.state.engine = gone
    try:
        for response in (app_client.get("/api/runs"), app_client.get("/"),
                         app_client.post("/api/runs", json={"preset": "fast-parity"}, headers=csrf)):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
    finally:
        app.state.engine.dispose()
        app.state.engine = real
    assert app_client.get("/api/runs").status_code == 200
