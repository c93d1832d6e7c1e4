"""A sweep's submit key (one sweep per key) and when it was cancelled; an index on a run's parent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

A frozen copy of the models' additions at this revision (migrations never import the models).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sweeps", sa.Column("idempotency_key", sa.String(length=100), nullable=True))
    op.add_column("sweeps", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_sweeps_idempotency_key", "sweeps", ["idempotency_key"], unique=True)
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])  # children without a scan of every run


def downgrade() -> None:
    op.drop_index("ix_runs_parent_run_id", table_name="runs")
    op.drop_index("ix_sweeps_idempotency_key", table_name="sweeps")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("cancelled_at")
        batch.drop_column("idempotency_key")
