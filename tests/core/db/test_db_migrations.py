"""Alembic migrations: they make the whole schema, repeat harmlessly, and match the models."""

from __future__ import annotations

import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from core.db import crud
from core.db.models import Base, Run
from core.db.session import alembic_config, make_engine, session_scope, upgrade

REPO_ROOT = Path(__file__).resolve().parents[3]  # where alembic.ini is, for the developers' command line


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(url) -> str | None:
    engine = make_engine(url)
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    return revision


def table_names(url) -> set[str]:
    engine = make_engine(url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_upgrade_creates_every_table(db_url):
    assert table_names(db_url) == set()
    upgrade(db_url)
    assert table_names(db_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert current_revision(db_url) == head_revision()


def test_second_upgrade_is_a_no_op(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        run_id = crud.create_run(session, spec={"problem": "parity"}).id
    upgrade(db_url)
    with session_scope(engine) as session:
        assert session.scalars(select(Run.id)).all() == [run_id]
    engine.dispose()
    assert current_revision(db_url) == head_revision()


def test_concurrent_upgrades_are_serialised(db_url):
    """A server and a worker may both migrate at start-up; neither may fail."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(upgrade, db_url) for _ in range(3)]:
            future.result()
    assert current_revision(db_url) == head_revision()


def test_models_match_migrated_schema(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_removes_every_table(db_url):
    upgrade(db_url)
    engine = make_engine(db_url, foreign_keys=False)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    engine.dispose()
    assert table_names(db_url) <= {"alembic_version"}


def test_upgrade_works_from_any_directory(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    upgrade(sqlite_url)
    assert "runs" in table_names(sqlite_url)


@pytest.mark.parametrize("url", ["sqlite:///unused.db", "postgresql://postgres@localhost/unused"])
def test_offline_sql_renders_for_both_dialects(url):
    buffer = io.StringIO()
    config = alembic_config(url)
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    for table in Base.metadata.tables:
        assert f"CREATE TABLE {table}" in sql


def test_alembic_command_line_upgrades_and_finds_no_drift(sqlite_url, tmp_path):
    url = sqlite_url.render_as_string()
    for args in (["upgrade", "head"], ["check"]):
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"url={url}", *args],
            cwd=REPO_ROOT, capture_output=True, text=True,
        )
        assert result.returncode == 0, result.stderr
    assert "runs" in table_names(sqlite_url)
