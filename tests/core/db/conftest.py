"""Fixtures for the records layer; ``db_url`` and ``postgres_database`` come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from core.db.session import make_engine, upgrade


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    """An engine on a freshly migrated database."""
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
