"""The SQL records layer: models, engines and session scopes, schema upgrades, crud helpers.

    from core.db import make_engine, session_scope, upgrade, crud
    upgrade(url)                              # schema to the newest Alembic revision
    engine = make_engine(url)
    with session_scope(engine) as session:
        run = crud.create_run(session, spec=flat_spec, preset="fast-parity")
"""

from core.db import crud
from core.db.models import (
    Base,
    Checkpoint,
    CheckpointKind,
    InterventionResult,
    Job,
    JobKind,
    Metric,
    ProbeSet,
    Run,
    Share,
    ShareKind,
    Snapshot,
    Status,
    Sweep,
)
from core.db.session import make_engine, session_scope, upgrade

__all__ = [
    "Base",
    "Checkpoint",
    "CheckpointKind",
    "InterventionResult",
    "Job",
    "JobKind",
    "Metric",
    "ProbeSet",
    "Run",
    "Share",
    "ShareKind",
    "Snapshot",
    "Status",
    "Sweep",
    "crud",
    "make_engine",
    "session_scope",
    "upgrade",
]
