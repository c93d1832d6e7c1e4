"""Share links over JSON: create one for a run, a comparison or a sweep; list a run's links; revoke.

    POST   /api/runs/7/shares   {"label": "for Ana", "expires_in_hours": 48, "state": "step=500&layer=1"}
        -> 201 {"id": 3, "url": "/s/<token>/runs/7?step=500&layer=1", ...}
    POST   /api/shares          {"kind": "compare", "run_ids": [7, 9], "state": "step=500"}
    POST   /api/shares          {"kind": "sweep", "sweep_id": 2}
    GET    /api/runs/7/shares   -> the run's links (never their tokens)
    DELETE /api/shares/3        -> revoked; the link answers 404 from now on

The token appears once, in the returned URL; the database keeps only its sha256 (core.db.shares).
``state`` is the view's URL query, so the link reopens the view as it was. All of these are the
owner's: none is mounted under /s/.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import crud, shares
from core.db.models import Share, Sweep, utcnow
from server.deps import BodyId, OwnerAccess, ReadSession, RunId, ShareId, WriteSession
from server.errors import NotFound

read = APIRouter()
write = APIRouter(tags=["shares"])

MAX_COMPARED = 4
MAX_STATE_CHARS = 2000


class ShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    label: str = Field("", max_length=200)
    expires_in_hours: float | None = Field(None, gt=0, le=24 * 366, allow_inf_nan=False)
    state: str = Field("", max_length=MAX_STATE_CHARS, description="the view's URL query, e.g. step=500&layer=1")


class NewShare(ShareIn):
    kind: Literal["run", "compare", "sweep"]
    run_ids: list[BodyId] = Field(default_factory=list, max_length=MAX_COMPARED)
    sweep_id: BodyId | None = None

    @model_validator(mode="after")
    def _target_fits_kind(self) -> "NewShare":
        if self.kind == "run" and len(self.run_ids) != 1:
            raise ValueError("a run link names exactly one run in run_ids")
        if self.kind == "compare" and not 2 <= len(set(self.run_ids)) <= MAX_COMPARED:
            raise ValueError(f"a compare link names 2 to {MAX_COMPARED} distinct runs in run_ids")
        if self.kind == "sweep" and self.sweep_id is None:
            raise ValueError("a sweep link needs sweep_id")
        return self


class ShareOut(BaseModel):
    id: int
    kind: str
    url: str
    label: str
    expires_at: datetime | None


class ShareRow(BaseModel):
    id: int
    kind: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    live: bool


def parse_state(state: str) -> dict[str, str]:
    """``"?step=500&layer=1"`` -> ``{"step": "500", "layer": "1"}`` (the last value of a repeated key)."""
    return dict(parse_qsl(state.lstrip("?"), keep_blank_values=False))


def view_path(share: Share) -> str:
    """Where a link opens, without its /s/<token> prefix: the shared view with its saved state."""
    state = dict(share.state)
    if share.kind == "sweep":
        path = f"/sweeps/{share.target['sweep_id']}"
    elif share.kind == "compare":
        path = "/compare"
        state = {"runs": ",".join(str(r) for r in share.target["run_ids"]), **state}
    else:
        path = f"/runs/{share.target['run_ids'][0]}"
    return path + ("?" + urlencode(state) if state else "")


def create_link(session: Session, *, kind: str, run_ids: list[int], sweep_id: int | None, label: str,
                expires_in_hours: float | None, state: str) -> tuple[Share, str]:
    """Check that what is shared exists, store the link, and return it with its URL (token included)."""
    run_ids = list(dict.fromkeys(run_ids))
    for run_id in run_ids:
        if crud.get_run(session, run_id=run_id) is None:
            raise NotFound(f"no run {run_id}")
    if kind == "sweep":
        if session.get(Sweep, sweep_id) is None:
            raise NotFound(f"no sweep {sweep_id}")
        target: dict = {"sweep_id": sweep_id}
    else:
        target = {"run_ids": run_ids}
    saved = {key: value for key, value in parse_state(state).items() if key != "runs"}
    expires_at = utcnow() + timedelta(hours=expires_in_hours) if expires_in_hours else None
    share, token = shares.create(session, kind=kind, target=target, state=saved, label=label, expires_at=expires_at)
    return share, f"/s/{token}{view_path(share)}"


def share_row(share: Share) -> ShareRow:
    now = utcnow()
    live = share.revoked_at is None and (share.expires_at is None or share.expires_at > now)
    return ShareRow(id=share.id, kind=share.kind, label=share.label, created_at=share.created_at,
                    expires_at=share.expires_at, revoked_at=share.revoked_at, live=live)


def _out(share: Share, url: str) -> ShareOut:
    return ShareOut(id=share.id, kind=share.kind, url=url, label=share.label, expires_at=share.expires_at)


@write.post("/api/runs/{run_id}/shares", status_code=201, response_model=ShareOut)
def create_run_share(run_id: RunId, body: ShareIn, response: Response, session: WriteSession,
                     _owner: OwnerAccess) -> ShareOut:
    response.headers["Cache-Control"] = "no-store"  # the body holds the token
    share, url = create_link(session, kind="run", run_ids=[run_id], sweep_id=None, label=body.label,
                             expires_in_hours=body.expires_in_hours, state=body.state)
    return _out(share, url)


@write.post("/api/shares", status_code=201, response_model=ShareOut)
def create_share(body: NewShare, response: Response, session: WriteSession,
                 _owner: OwnerAccess) -> ShareOut:
    response.headers["Cache-Control"] = "no-store"  # the body holds the token
    share, url = create_link(session, kind=body.kind, run_ids=body.run_ids, sweep_id=body.sweep_id,
                             label=body.label, expires_in_hours=body.expires_in_hours, state=body.state)
    return _out(share, url)


@write.get("/api/runs/{run_id}/shares", response_model=list[ShareRow])
def list_run_shares(run_id: RunId, session: ReadSession,
                    _owner: OwnerAccess) -> list[ShareRow]:
    if crud.get_run(session, run_id=run_id) is None:
        raise NotFound(f"no run {run_id}")
    return [share_row(share) for share in shares.list_for_run(session, run_id=run_id)]


@write.get("/api/shares", response_model=list[ShareRow])
def list_all_shares(session: ReadSession, _owner: OwnerAccess) -> list[ShareRow]:
    return [share_row(share) for share in session.scalars(select(Share).order_by(Share.id.desc()).limit(500))]


@write.delete("/api/shares/{share_id}", response_model=ShareRow)
def revoke_share(share_id: ShareId, session: WriteSession,
                 _owner: OwnerAccess) -> ShareRow:
    share = shares.revoke(session, share_id=share_id)
    if share is None:
        raise NotFound(f"no share link {share_id}")
    return share_row(share)
