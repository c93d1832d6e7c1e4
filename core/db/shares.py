"""Read-only share links: a random token shown once, stored only as its sha256.

    link, token = shares.create(session, kind="run", target={"run_ids": [7]}, state={"step": 500})
    share = shares.resolve(session, token=token)       # None: unknown, revoked or expired
    shares.revoke(session, share_id=link.id)

A token is 32 random bytes (256 bits) in URL-safe base64. Whoever holds it may read exactly what
`target` names (the runs of a run or compare link, or one sweep and its runs) and nothing else;
`state` is the view's URL query, so the link reopens the view as it was shared.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, or_, select, update
from sqlalchemy.orm import Session

from core.db.models import Run, Share, ShareKind, utcnow

TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(session: Session, *, kind: str, target: dict[str, Any], state: dict[str, Any] | None = None,
           label: str = "", expires_at: datetime | None = None) -> tuple[Share, str]:
    """Store a new link and return it with its token (the only time the token exists in clear)."""
    kind = ShareKind(kind).value
    if expires_at is not None and expires_at <= utcnow():
        raise ValueError("expires_at must be in the future")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    share = Share(token_hash=hash_token(token), kind=kind, target=dict(target), state=dict(state or {}),
                  label=label, expires_at=expires_at)
    session.add(share)
    session.flush()
    return share, token


def resolve(session: Session, *, token: str, now: datetime | None = None) -> Share | None:
    """The live link for ``token``; None when unknown, revoked or expired."""
    share = session.scalars(select(Share).where(Share.token_hash == hash_token(token))).first()
    now = now or utcnow()
    if share is None or share.revoked_at is not None or (share.expires_at is not None and share.expires_at <= now):
        return None
    return share


def revoke(session: Session, *, share_id: int) -> Share | None:
    """Revoke link ``share_id`` (None: no such link); a link already revoked keeps its first time.

    One conditional UPDATE (``WHERE revoked_at IS NULL``), so of concurrent revokes exactly one
    writes the time, and every caller reads back that one.
    """
    session.execute(update(Share).where(Share.id == share_id, Share.revoked_at.is_(None))
                    .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    return session.scalars(select(Share).where(Share.id == share_id)
                           .execution_options(populate_existing=True)).first()


def list_for_run(session: Session, *, run_id: int) -> list[Share]:
    """Every link (live or not) that opens run ``run_id``, newest first, in one query.

    SQL keeps the sweep links of the run's own sweep and the run and compare links whose target text
    holds the id's digits (portable: JSON as text on SQLite and PostgreSQL alike); Python then keeps
    only those whose ``run_ids`` really name the run (``7`` is also in ``[17]``).
    """
    sweep_id = session.scalar(select(Run.sweep_id).where(Run.id == run_id))
    named = and_(Share.kind.in_([ShareKind.RUN.value, ShareKind.COMPARE.value]),
                 cast(Share.target, String).contains(str(int(run_id))))
    wanted = or_(named, and_(Share.kind == ShareKind.SWEEP.value, Share.target["sweep_id"].as_integer() == sweep_id)) \
        if sweep_id is not None else named
    rows: Sequence[Share] = session.scalars(select(Share).where(wanted).order_by(Share.id.desc())).all()
    return [s for s in rows if s.kind == ShareKind.SWEEP.value
            or run_id in {int(i) for i in s.target.get("run_ids", [])}]


def readable_run_ids(session: Session, share: Share) -> set[int]:
    """The runs a link may read: those it names, or the runs of the sweep it names."""
    if share.kind == ShareKind.SWEEP.value:
        sweep_id = share.target.get("sweep_id")
        return set(session.scalars(select(Run.id).where(Run.sweep_id == sweep_id)))
    return {int(run_id) for run_id in share.target.get("run_ids", [])}
