"""Fixtures for the job tests: real databases and real worker processes (see support.py).

``db_url`` (tests/conftest.py) is parametrised over SQLite and PostgreSQL (a schema of its own in
the session's database; skipped when the server is unreachable, unless CI=true); ``engine`` and
``sqlite_engine`` (tests/conftest.py) are such databases, migrated. ``workers`` starts local
workers and fails the test if any process they made is left behind. ``stack`` is one of the two
deployments (SQLite + ``worker.local``, or PostgreSQL + Redis + Celery), ``celery_stack`` the second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from core.settings import Settings
from tests.conftest import fresh_schema
from tests.worker.support import RedisServer, Stack, Workers, migrated, start_celery


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    manager = Workers(tmp_path)
    yield manager
    left = manager.cleanup()
    assert not left, f"processes left behind: {left}"


# ---------------------------------------------------------------- a broker of the test's own


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server (free port, no persistence), killed after the test.

    Skipped when redis-server is not installed, unless CI=true (then it fails).
    """
    import os
    import shutil

    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required when CI=true: {message}")
        pytest.skip(f"{message}; set CI=true to make this a failure")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


# ---------------------------------------------------------------- the two deployments


@pytest.fixture(params=["local", pytest.param("celery", marks=[pytest.mark.postgres, pytest.mark.redis])])
def stack(request, tmp_path, workers):
    if request.param == "local":
        url = make_url(f"sqlite:///{tmp_path / 'circuitboard.db'}")
        engine = migrated(url)
        yield Stack("local", url, engine, Settings(database_url=url.render_as_string(hide_password=False)),
                    lambda env=None: workers.start(url, env=env), "on queues")
        engine.dispose()
        return
    redis = request.getfixturevalue("redis_server")
    with fresh_schema(request.getfixturevalue("postgres_database")) as url:
        engine = migrated(url)
        settings = Settings(database_url=url.render_as_string(hide_password=False), broker_url=redis.url)
        yield Stack("celery", url, engine, settings, lambda env=None: start_celery(workers, url, redis.url, env=env),
                    "upkeep every")
        engine.dispose()


@pytest.fixture
def celery_stack(request, workers, redis_server, postgres_database):
    with fresh_schema(postgres_database) as url:
        engine = migrated(url)
        settings = Settings(database_url=url.render_as_string(hide_password=False), broker_url=redis_server.url)
        yield Stack("celery", url, engine, settings,
                    lambda env=None: start_celery(workers, url, redis_server.url, env=env), "upkeep every")
        engine.dispose()
