"""The compare page, ``/compare?runs=3,5[,8]&step=..&link=step|fraction&layer=..&head=..&probe=..``.

Renders the same data as ``GET /api/compare`` (``server.api.compare.build_compare``) into
compare.html; ``static/js/compare.js`` draws it and, when a control changes, fetches the JSON twin
and rewrites the URL (history.replaceState), so a copied or shared link reopens the same view.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from server.access import Access, get_access
from server.api.compare import build_compare, parse_run_ids
from server.deps import read_session

read = APIRouter(include_in_schema=False)
write = APIRouter()


@read.get("/compare")
def compare_page(request: Request, runs: Annotated[str, Query(max_length=200)] = "",
                 step: Annotated[int | None, Query(ge=0, le=10**9)] = None,
                 link: Literal["step", "fraction"] = "step",
                 layer: Annotated[int | None, Query(ge=0, le=64)] = None,
                 head: Annotated[int | None, Query(ge=0, le=256)] = None,
                 probe: Annotated[int | None, Query(ge=0, le=100_000)] = None,
                 session: Session = Depends(read_session), access: Access = Depends(get_access)) -> Response:
    templates = request.app.state.templates
    if not runs.strip():
        return templates.TemplateResponse(request, "compare.html", {"access": access, "data": None, "error": ""})
    try:
        run_ids = parse_run_ids(runs)
    except HTTPException as error:
        return templates.TemplateResponse(request, "compare.html",
                                          {"access": access, "data": None, "error": error.detail[0]["msg"]},
                                          status_code=422)
    data = build_compare(session, access=access, run_ids=run_ids, step=step, link=link, layer=layer, head=head,
                         probe=probe)
    return templates.TemplateResponse(request, "compare.html", {
        "access": access, "data": data, "error": "", "api_url": access.url("/api/compare"),
        "share_kind": "compare", "share_run_ids": run_ids, "share_sweep_id": None,
        "reference_steps": data["panels"][0]["steps"],
    })
