"""The paper's studies over JSON: several seed sets (or a grid) queued in one request (core/studies.py).

    GET  /api/studies   -> {"studies": [{"name", "title", "arms": [{"name", "preset", "runs", "from_arm", "at_step"}]}]}
    POST /api/studies   {"study": "paper-dynamics-cpu", "pack_size": 8}
        -> 201 {"sweeps": {"polynomial": 12, ...}, "url": "/seed-sets/compare?sets=12,13,14,15"}

Launching inserts every arm (its sweep, its runs; the fine-tuned arms' members wait for their
parents), commits, then dispatches; 422 naming ``study`` or ``pack_size`` on bad input.
"""

from __future__ import annotations

from math import prod

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from core.db.session import session_scope
from core.packing import check_pack_size
from core.specs.errors import SpecError
from core.studies import STUDIES, launch_study
from core.submit import dispatch
from server.deps import OwnerAccess

read = APIRouter(tags=["studies"])  # nothing a share link may read
write = APIRouter(tags=["studies"])  # the owner's: the list the form offers, and launching one


class StudyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study: str = Field(max_length=100)
    pack_size: int | None = None


@write.get("/api/studies")  # the owner's (the form's), never under a share link
def list_studies(_owner: OwnerAccess) -> dict:
    return {"studies": [{"name": name, "title": study.title, "arms": [
        {"name": arm.name, "preset": arm.preset, "from_arm": arm.from_arm, "at_step": arm.at_step,
         "runs": (len(arm.seeds) or 1) * prod(len(values) for values in arm.axes.values())
         if arm.from_arm is None else None} for arm in study.arms]} for name, study in STUDIES.items()]}


@write.post("/api/studies", status_code=201)
def new_study(body: StudyIn, request: Request, _owner: OwnerAccess) -> dict:
    if body.study not in STUDIES:
        raise SpecError([("study", f"unknown study {body.study!r}; known: {', '.join(STUDIES)}")])
    if body.pack_size is not None:
        check_pack_size(body.pack_size)  # SpecError -> 422
    with session_scope(request.app.state.engine) as session:
        launched = launch_study(session, body.study, pack_size=body.pack_size)
    dispatch(request.app.state.settings, launched.job_ids)  # after the commit
    ids = list(launched.sweep_ids.values())
    grid = any(arm.axes for arm in STUDIES[body.study].arms)
    url = f"/sweeps/{ids[0]}" if grid or len(ids) == 1 else f"/seed-sets/compare?sets={','.join(map(str, ids))}"
    return {"sweeps": launched.sweep_ids, "url": url}
