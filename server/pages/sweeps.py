"""The sweep page, ``/sweeps/{id}``: the paper's scaling figures for one sweep.

Heatmaps of final test accuracy and of each circuit head's peaky_thres over the two swept axes
(mean over seeds), every cell linking to its run, and a table of the cells. The data is
``server.api.sweeps.build_sweep``, the same as ``GET /api/sweeps/{id}``; ``static/js/sweep.js``
draws it and refreshes it while cells are still training.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from server.access import Access, get_access
from server.api.sweeps import build_sweep
from server.deps import SweepId, read_session

read = APIRouter(include_in_schema=False)
write = APIRouter()


@read.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep_id: SweepId, session: Session = Depends(read_session),
               access: Access = Depends(get_access)) -> Response:
    data = build_sweep(session, sweep_id=sweep_id, access=access)
    return request.app.state.templates.TemplateResponse(request, "sweep.html", {
        "access": access, "data": data, "api_url": access.url(f"/api/sweeps/{sweep_id}"),
        "share_kind": "sweep", "share_run_ids": [], "share_sweep_id": sweep_id})
