"""Engines and session scopes: SQLite pragmas and locking, URL handling, UTC timestamps."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select, text

from core.db import crud, jobs
from core.db.models import Job, Run
from core.db.session import SQLITE_BUSY_TIMEOUT_MS, make_engine, normalize_url, session_scope, upgrade


def test_sqlite_pragmas_are_in_force(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") == SQLITE_BUSY_TIMEOUT_MS
        assert pragma("foreign_keys") == 1
    engine.dispose()


def test_sqlite_transactions_begin_immediate(sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    other = sqlite3.connect(sqlite_url.database, timeout=0, isolation_level=None)
    with session_scope(engine) as session:
        session.scalars(select(Run)).all()  # only a read so far, yet the write lock is held
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # released at commit
    other.execute("ROLLBACK")
    assert statements[0] == "BEGIN IMMEDIATE"

    with session_scope(engine, readonly=True) as session:
        session.scalars(select(Run)).all()
        other.execute("BEGIN IMMEDIATE")  # a read-only scope does not block writers
        other.execute("ROLLBACK")
    assert "BEGIN DEFERRED" in statements
    other.close()
    engine.dispose()


def test_sqlite_concurrent_read_modify_write_loses_no_update(sqlite_url):
    upgrade(sqlite_url)
    setup = make_engine(sqlite_url)
    with session_scope(setup) as session:
        run_id = crud.create_run(session, spec={}).id
    errors: list[BaseException] = []

    def bump(times: int) -> None:
        engine = make_engine(sqlite_url)  # one engine (connection) per thread
        try:
            for _ in range(times):
                with session_scope(engine) as session:
                    run = crud.get_run(session, run_id=run_id)
                    crud.update_run(session, run_id=run_id, step=run.step + 1)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_scope(setup) as session:
        assert crud.get_run(session, run_id=run_id).step == 100
    setup.dispose()


def test_session_scope_rolls_back_on_error(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            crud.create_run(session, spec={})
            raise RuntimeError("boom")
    with session_scope(engine) as session:
        assert crud.list_runs(session) == []


def test_readonly_scope_does_not_commit(engine):
    with session_scope(engine, readonly=True) as session:
        crud.create_run(session, spec={})
    with session_scope(engine) as session:
        assert crud.list_runs(session) == []


def test_timestamps_are_aware_utc(engine):
    eastern = timezone(timedelta(hours=-5))
    local = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=eastern)
    with session_scope(engine) as session:
        job = jobs.submit_sweep_job(session, sweep_id=1)
        job.lease_expires_at = local
        job_id = job.id
    with session_scope(engine) as session:
        job = crud.get_job(session, job_id=job_id)
        assert job.lease_expires_at == local and job.lease_expires_at.tzinfo == UTC
        assert job.created_at.tzinfo == UTC and job.updated_at >= job.created_at
        expired = select(Job.id).where(Job.lease_expires_at < datetime(2024, 1, 2, 8, 5, tzinfo=UTC))
        assert session.scalars(expired).all() == [job_id]
        job.heartbeat_at = datetime(2024, 1, 1)  # naive: rejected
        with pytest.raises(Exception, match="naive"):
            session.flush()
        session.rollback()


@pytest.mark.parametrize(
    "url, driver",
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_normalize_url_picks_psycopg(url, driver):
    assert normalize_url(url).drivername == driver


@pytest.mark.postgres
def test_postgresql_engine_pre_pings(postgres_database):
    engine = make_engine(postgres_database.set(drivername="postgresql"))
    assert engine.dialect.driver == "psycopg" and engine.pool._pre_ping
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
