"""Opening the database: engines, session scopes, and schema upgrades.

- `make_engine(url)` builds an engine for SQLite or PostgreSQL with the settings the system
  relies on (docs/architecture.md, "Storage").
- `session_scope(engine)` is the unit of work: commit on success, roll back on error.
- `upgrade(url)` brings the schema to the newest Alembic revision; it is how the schema is
  made (the CLI calls it before serving, tests call it on empty databases).

SQLite transactions. Python's sqlite3 driver starts transactions lazily and only before DML,
so two processes can both read, then both try to write, and one fails with "database is
locked" without waiting. We take over transaction control (SQLAlchemy's documented recipe):
sqlite3's own BEGIN is disabled, and every transaction starts with `BEGIN IMMEDIATE`, which
takes the write lock up front and waits up to `busy_timeout` for it. In WAL mode readers never
block, so a read-only scope (`session_scope(engine, readonly=True)`) starts a plain deferred
`BEGIN` instead and does not queue behind writers. The busy timeout is 30 s unless the URL names
another (the driver's own parameter, in seconds: ``sqlite:///circuitboard.db?timeout=5``); past it
a write fails with "database is locked", which `core.db.jobs.is_transient` counts as the
database failing, never as a job's error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Connection execution option naming the SQLite BEGIN mode ("IMMEDIATE" or "DEFERRED").
_SQLITE_BEGIN = "circuitboard_sqlite_begin"
# Arbitrary constant key of the PostgreSQL advisory lock that serialises concurrent upgrades.
_UPGRADE_LOCK_KEY = 0x63697263  # "circ"


def normalize_url(url: str | URL) -> URL:
    """Parse `url`; PostgreSQL URLs without a driver (postgresql://, postgres://) get psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, *, foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """Create an engine for `url` (SQLite or PostgreSQL); extra kwargs go to create_engine.

    SQLite: WAL journal, busy_timeout, `PRAGMA foreign_keys` (ON unless `foreign_keys=False`,
    which only schema migrations use: rebuilding a parent table would otherwise cascade-delete
    its children), and BEGIN IMMEDIATE transactions (see the module docstring).
    PostgreSQL: psycopg 3 driver, pool_pre_ping so dropped connections are replaced.
    ``pool_timeout`` (seconds a checkout waits for a pooled connection before the pool's TimeoutError;
    the web app passes ``settings.db_pool_timeout_seconds``, so an overloaded server answers 503 soon
    instead of after SQLAlchemy's 30 s) applies only where there is a pool to wait for: it is dropped
    for an in-memory SQLite database, whose single-connection pool takes no timeout.
    """
    parsed = normalize_url(url)
    if kwargs.get("pool_timeout") is None or _in_memory(parsed):
        kwargs.pop("pool_timeout", None)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)

    engine = create_engine(parsed, **kwargs)
    busy_timeout_ms = sqlite_busy_timeout_ms(parsed)

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        _enable_wal(cursor)
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_sqlite(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _in_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_busy_timeout_ms(url: str | URL) -> int:
    """How long a SQLite write waits for the lock: the URL's ``timeout`` (seconds), else 30 s."""
    given = make_url(url).query.get("timeout")
    if given is None:
        return SQLITE_BUSY_TIMEOUT_MS
    try:
        seconds = float(given if isinstance(given, str) else given[-1])
    except ValueError:
        raise ValueError(f"the SQLite URL's timeout must be a number of seconds (got {given!r})") from None
    if not 0 <= seconds <= 3600:
        raise ValueError(f"the SQLite URL's timeout must be between 0 and 3600 seconds (got {seconds:g})")
    return int(seconds * 1000)


def _enable_wal(cursor: Any, *, attempts: int = 50) -> None:
    """Switch a SQLite file to WAL (persistent, so a no-op once done).

    The switch needs the file to itself, and SQLite may refuse it at once ("database is locked")
    rather than wait, when several processes open a new file together: retry briefly.
    """
    import sqlite3

    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


@contextmanager
def session_scope(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """Yield a Session; commit when the block succeeds, roll back when it raises.

    Objects stay readable after the block (expire_on_commit=False). With `readonly=True`
    the block must only read: SQLite starts a deferred transaction, and the session is
    rolled back at the end instead of committed.
    """
    bind = engine.execution_options(**{_SQLITE_BEGIN: "DEFERRED"}) if readonly else engine
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        if readonly:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | URL | None = None) -> Any:
    """An Alembic Config pointing at the installed package's migrations, usable from any CWD.

    It is built in code rather than read from alembic.ini, so calling it never
    reconfigures the application's logging, and it works wherever the package is installed.
    """
    from alembic.config import Config

    from core.resources import migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (default: the newest); a no-op when current.

    Runs in one transaction. Concurrent callers are serialised (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: an advisory lock), so a server and a worker may both call it at start-up.
    """
    from alembic import command

    engine = make_engine(url, foreign_keys=False, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK_KEY})")
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            if connection.dialect.name == "sqlite":
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left dangling foreign keys: {broken[:5]}")
    finally:
        engine.dispose()

