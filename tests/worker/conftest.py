"""Fixtures for the job tests: real databases and real worker processes (see support.py).

``db_url`` (tests/conftest.py) is parametrised over SQLite and PostgreSQL (a schema of its own in
the session's database; skipped when the server is unreachable, unless CI=true); ``engine`` and
``sqlite_engine`` (tests/conftest.py) are such databases, migrated. ``workers`` starts local
workers and fails the test if any process they made is left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.worker.support import RedisServer, Workers


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
