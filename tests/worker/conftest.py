"""Fixtures for the job tests: real databases and real worker processes (see support.py).

``db_url`` is parametrised over SQLite (a file under tmp_path) and PostgreSQL (a schema of its own
inside a database created for this module and dropped after it; skipped when the server is
unreachable, unless CI=true). ``engine`` is that database, migrated. ``workers`` starts local
workers and fails the test if any process they made is left behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from tests.worker.support import Workers, migrated

ADMIN_URL = os.environ.get("CIRCUITBOARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[URL]:
    """A uniquely named PostgreSQL database for this module, dropped after it."""
    admin_url = make_url(ADMIN_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"circuitboard_jobs_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection failure means "unreachable"
        admin.dispose()
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required when CI=true: {reason}")
        pytest.skip(f"PostgreSQL unreachable at {admin_url.render_as_string()} ({reason}); CI is not 'true'")
    try:
        yield admin_url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """URL of an empty database of the parametrised dialect."""
    if request.param == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'circuitboard.db'}")
        return
    database: URL = request.getfixturevalue("postgres_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield database.update_query_dict({"options": f"-csearch_path={schema}"})
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    return make_url(f"sqlite:///{tmp_path / 'circuitboard.db'}")


@pytest.fixture
def sqlite_engine(sqlite_url: URL) -> Iterator[Engine]:
    """For what only SQLite shows (or only needs showing once)."""
    engine = migrated(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    engine = migrated(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    manager = Workers(tmp_path)
    yield manager
    left = manager.cleanup()
    assert not left, f"processes left behind: {left}"
