"""The compare page, ``/compare?runs=3,5[,8]&step=..&link=step|fraction&layer=..&head=..&probe=..``.

Renders ``server.views.compare.compare_view``, the same data as ``GET /api/compare``, into
compare.html; ``static/js/compare.js`` draws it and, when a control changes, fetches the JSON twin
and rewrites the URL (history.replaceState), so a copied or shared link reopens the same view.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from core.specs.errors import SpecError
from server.deps import CurrentAccess, ReadSession
from server.views import compare as views

read = APIRouter(include_in_schema=False)
write = APIRouter()


@read.get("/compare")
def compare_page(request: Request, session: ReadSession, access: CurrentAccess,
                 runs: Annotated[str, Query(max_length=200)] = "",
                 step: Annotated[int | None, Query(ge=0, le=10**9)] = None,
                 link: Literal["step", "fraction"] = "step",
                 layer: Annotated[int | None, Query(ge=0, le=64)] = None,
                 head: Annotated[int | None, Query(ge=0, le=256)] = None,
                 probe: Annotated[int | None, Query(ge=0, le=100_000)] = None) -> Response:
    templates = request.app.state.templates
    if not runs.strip():
        return templates.TemplateResponse(request, "compare.html", {"access": access, "data": None, "error": ""})
    try:
        run_ids = views.parse_run_ids(runs)
    except SpecError as error:
        return templates.TemplateResponse(request, "compare.html",
                                          {"access": access, "data": None, "error": error.errors[0][1]},
                                          status_code=422)
    data = views.compare_view(session, access=access, run_ids=run_ids, step=step, link=link, layer=layer,
                              head=head, probe=probe)
    return templates.TemplateResponse(request, "compare.html", {
        "access": access, "data": data, "error": "", "api_url": access.url("/api/compare"),
        "share_kind": "compare", "share_run_ids": run_ids, "share_sweep_id": None,
        "reference_steps": data["panels"][0]["steps"],
    })
