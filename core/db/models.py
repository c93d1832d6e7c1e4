"""The SQL records of circuitboard: runs, jobs, metrics, probe sets, snapshots, checkpoints,
sweeps, share links and intervention results.

The database is the system of record (docs/architecture.md, "Storage"). Every child table points at
`runs` with ON DELETE CASCADE, so deleting a run deletes everything recorded for it.

Conventions used throughout:
- statuses and kinds are short strings constrained by CHECK constraints whose allowed values
  come from the `Status`, `JobKind` and `CheckpointKind` enums below;
- timestamps are timezone-aware UTC datetimes (`UTCDateTime`), also on SQLite;
- arrays are stored as bytes (see `core.db.arrays`), with their shape in a JSON column;
- the schema itself is made by Alembic (`migrations/`), never by `metadata.create_all`.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from core.names import CHECKPOINT_RESUME, CHECKPOINT_WEIGHTS, JOB_INTERVENE, JOB_SWEEP, JOB_TRAIN


class Status(str, enum.Enum):
    """Life cycle of a run and of a job."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class JobKind(str, enum.Enum):
    """What a queued job does."""

    TRAIN = JOB_TRAIN
    INTERVENE = JOB_INTERVENE
    SWEEP = JOB_SWEEP


class ShareKind(str, enum.Enum):
    """What a read-only share link opens."""

    RUN = "run"
    COMPARE = "compare"
    SWEEP = "sweep"


class CheckpointKind(str, enum.Enum):
    """`resume` holds model + optimizer state; `weights` holds the model only."""

    RESUME = CHECKPOINT_RESUME
    WEIGHTS = CHECKPOINT_WEIGHTS


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only kind stored)."""
    return datetime.now(UTC)


def _one_of(column: str, values: type[enum.Enum]) -> CheckConstraint:
    """CHECK constraint `column IN (...)`, named `column` (ck_<table>_<column> by convention)."""
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime that accepts only aware datetimes and always returns aware UTC ones.

    PostgreSQL stores `timestamptz`; SQLite stores the UTC wall time as text and the
    UTC zone is re-attached on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base; its metadata is Alembic's `target_metadata`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _run_fk() -> ForeignKey:
    return ForeignKey("runs.id", ondelete="CASCADE")


class Run(Base):
    """One training of one model on one problem; `spec` is the flat RunSpec dict."""

    __tablename__ = "runs"
    __table_args__ = (
        _one_of("status", Status),
        Index("ix_runs_status", "status"),
        Index("ix_runs_sweep_id", "sweep_id"),
        Index("ix_runs_idempotency_key", "idempotency_key", unique=True),
        Index("ix_runs_parent_run_id", "parent_run_id"),  # a run's children (its lineage, its cache stamp)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=Status.QUEUED.value)
    preset: Mapped[str | None] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    parent_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL")
    )
    parent_step: Mapped[int | None] = mapped_column(Integer)
    sweep_id: Mapped[int | None] = mapped_column(Integer)
    sweep_cell: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"d_model": 64, "seed": 1}: its sweep cell
    idempotency_key: Mapped[str | None] = mapped_column(String(100))  # one run per submit key (unique)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")


class Job(Base):
    """A unit of queued work. Writes by a worker are conditional on `fencing_token`."""

    __tablename__ = "jobs"
    __table_args__ = (
        _one_of("status", Status),
        _one_of("kind", JobKind),
        Index("ix_jobs_status_queue", "status", "queue"),
        Index("ix_jobs_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int | None] = mapped_column(_run_fk())
    status: Mapped[str] = mapped_column(String(16), default=Status.QUEUED.value)
    queue: Mapped[str] = mapped_column(String(32), default="cpu")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    fencing_token: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Metric(Base):
    """One scalar of a run at one step: the long narrow metrics table."""

    __tablename__ = "metrics"
    # The population pages read these four columns of many runs at once: with ``value`` in an index
    # they never visit the table (migration 0004).
    __table_args__ = (Index("ix_metrics_run_key_step_value", "run_id", "key", "step", "value"),)

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float | None] = mapped_column(Double)  # NULL stands for NaN


class ProbeSet(Base):
    """The run's fixed probe sequences: tokens [N, W] uint8 and lengths [N] int16, packed."""

    __tablename__ = "probe_sets"

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    tokens: Mapped[bytes] = mapped_column(LargeBinary)
    lengths: Mapped[bytes] = mapped_column(LargeBinary)
    shape: Mapped[list[int]] = mapped_column(JSON)  # [N, W]


class Snapshot(Base):
    """Attention maps of every layer/head on the probe set at one step (packed float16)."""

    __tablename__ = "snapshots"

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    shape: Mapped[list[int]] = mapped_column(JSON)
    layout: Mapped[dict[str, Any]] = mapped_column(JSON)  # axis names, dtype, ...
    nbytes: Mapped[int] = mapped_column(BigInteger)


class Checkpoint(Base):
    """Serialized model (+ optimizer for `resume`) state at one step, with its sha256."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        _one_of("kind", CheckpointKind),
        UniqueConstraint("run_id", "kind", "step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    step: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    nbytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Sweep(Base):
    """A grid of train runs: `spec` is the flat base RunSpec, `axes` maps spec keys to value lists.

    Its runs point back through `runs.sweep_id` and name their cell in `runs.sweep_cell`. A submit key
    (`idempotency_key`, unique) makes one sweep however often it is sent; `cancelled_at` set means the
    sweep was cancelled: its expansion adds no run any more.
    """

    __tablename__ = "sweeps"
    __table_args__ = (Index("ix_sweeps_idempotency_key", "idempotency_key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    preset: Mapped[str | None] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    axes: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"d_model": [32, 64], "seed": [0, 1]}
    idempotency_key: Mapped[str | None] = mapped_column(String(100))  # one sweep per submit key (unique)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Share(Base):
    """A read-only link: only the sha256 of its token is stored; `target` names what it opens.

    `target` is {"run_ids": [..]} for run and compare links, {"sweep_id": n} for sweeps;
    `state` is the view's URL query (step, layer, head, probe, ...) reopened by the link.
    """

    __tablename__ = "shares"
    __table_args__ = (_one_of("kind", ShareKind),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InterventionResult(Base):
    """What one intervention did to a run's checkpoint at one step, keyed (run, step, intervention, target).

    `intervention` names the kind and variant (``ablate/zero``, ``edge/eoi/renorm``, ``probe/eoi_position``);
    `target` the head, edge or hook site (``L1H0``, ``blocks.0.hook_resid_post@5``); `result` holds
    the figures (accuracy by length, baseline, metric).
    """

    __tablename__ = "intervention_results"
    __table_args__ = (UniqueConstraint("run_id", "step", "intervention", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    step: Mapped[int] = mapped_column(Integer)
    intervention: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
