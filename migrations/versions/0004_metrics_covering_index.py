"""A covering index on metrics (run_id, key, step, value), for the population pages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

The primary key (run_id, key, step) finds a seed set's rows, but each value then costs a visit to
the table row. The population queries (``core.population``: bands over seeds, steps to a
threshold, a sweep's values at a step) read only these four columns, so with ``value`` in the index
they are answered from the index alone (SQLite: a covering index; PostgreSQL: an index-only scan).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_metrics_run_key_step_value", "metrics", ["run_id", "key", "step", "value"])


def downgrade() -> None:
    op.drop_index("ix_metrics_run_key_step_value", table_name="metrics")
