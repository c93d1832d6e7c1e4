"""Alembic environment for circuitboard: one schema for SQLite and PostgreSQL.

Connection, in order of preference:
1. `config.attributes["connection"]`: an open connection handed in by
   `core.db.session.upgrade(url)` (the way programs migrate);
2. a URL: `alembic -x url=...`, else `sqlalchemy.url` in the config, else the
   CIRCUITBOARD_DATABASE_URL environment variable, else the settings default.

SQLite cannot ALTER most things in place, so operations are rendered in batch mode
(copy the table, swap it in); engines made here keep foreign keys OFF on SQLite so that
such a rebuild never cascades into child tables.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from core.db.models import Base, UTCDateTime
from core.db.session import make_engine, normalize_url

DEFAULT_URL = "sqlite:///circuitboard.db"

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate when no connection was handed in."""
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("CIRCUITBOARD_DATABASE_URL")
        or DEFAULT_URL
    )
    return normalize_url(url).render_as_string(hide_password=False)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate renders our UTCDateTime as the plain column type it stores."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(dialect: str, **kwargs: Any) -> None:
    """context.configure with the options every mode shares."""
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=dialect == "sqlite",
        compare_type=True,
        render_item=render_item,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: print the SQL instead of running it."""
    url = database_url()
    configure(normalize_url(url).get_backend_name(), url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        configure(connection.dialect.name, connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(database_url(), foreign_keys=False, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            configure(connection.dialect.name, connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
