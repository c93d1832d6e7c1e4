"""Databases every test folder shares: one PostgreSQL database per test session, a schema per use.

PostgreSQL is expected at CIRCUITBOARD_TEST_POSTGRES_URL (default: user postgres, trust auth,
127.0.0.1:5432, database `test`, used only to create and drop the session's database). When it is
unreachable the PostgreSQL cases are skipped, except under CI=true, where they fail.

``db_url`` is parametrised over both dialects and always names an EMPTY database: a fresh SQLite
file under tmp_path, or a fresh schema (selected through search_path) in the session's database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

ADMIN_URL = os.environ.get("CIRCUITBOARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required when CI=true: {reason}")
    pytest.skip(f"PostgreSQL unavailable ({reason}); set CI=true to make this a failure")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[URL]:
    """URL of a uniquely named PostgreSQL database that lives for this test session."""
    admin_url = make_url(ADMIN_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"circuitboard_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection failure means "unreachable"
        admin.dispose()
        message = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        _unavailable(f"{admin_url.render_as_string()}: {message}")
    try:
        yield admin_url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_schema(database: URL) -> Iterator[URL]:
    """A new, empty schema in ``database``; the URL selects it through search_path."""
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """URL of an empty database of the parametrised dialect."""
    if request.param == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'circuitboard.db'}")
        return
    with fresh_schema(request.getfixturevalue("postgres_database")) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    """URL of an empty SQLite file (for SQLite-only behaviour)."""
    return make_url(f"sqlite:///{tmp_path / 'circuitboard.db'}")


@contextmanager
def migrated(url: URL) -> Iterator[Engine]:
    """An engine on ``url``, migrated to head, disposed on exit."""
    from core.db.session import make_engine, upgrade

    upgrade(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    """``db_url`` (SQLite and PostgreSQL), migrated."""
    with migrated(db_url) as engine:
        yield engine


@pytest.fixture
def sqlite_engine(sqlite_url: URL) -> Iterator[Engine]:
    """An SQLite file, migrated (for what only needs showing once)."""
    with migrated(sqlite_url) as engine:
        yield engine


@pytest.fixture
def one_thread():
    """The machine is shared with long experiments: one torch thread for the test, then as before."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
