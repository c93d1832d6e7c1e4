"""The sweep page, ``/sweeps/{id}``: the paper's scaling figures for one sweep.

Heatmaps of final test accuracy and of each circuit head's peaky_thres over the two swept axes
(mean over seeds), every cell linking to its run, and a table of the cells. The data is
``server.views.sweeps.sweep_view``, the same as ``GET /api/sweeps/{id}``; ``static/js/sweep.js``
draws it and refreshes it while cells are still training.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from server.deps import CurrentAccess, ReadSession, SweepId
from server.views import sweeps as views

read = APIRouter(include_in_schema=False)
write = APIRouter()


@read.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep_id: SweepId, session: ReadSession, access: CurrentAccess) -> Response:
    data = views.sweep_view(session, sweep_id=sweep_id, access=access)
    return request.app.state.templates.TemplateResponse(request, "sweep.html", {
        "access": access, "data": data, "api_url": access.url(f"/api/sweeps/{sweep_id}"),
        "share_kind": "sweep", "share_run_ids": [], "share_sweep_id": sweep_id})
