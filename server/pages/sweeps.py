"""The sweep pages: ``/sweeps`` (every sweep and seed set) and ``/sweeps/{id}`` (the paper's scaling figures).

``/sweeps/{id}?step=2000&score=peaky_abs``: heatmaps of test accuracy and of each circuit head's
score over the two swept axes (mean over seeds, the spread on hover), final or at a snapshot step,
every cell linking to its run, and a table of the cells. The data is
``server.views.sweeps.sweep_view``, the same as ``GET /api/sweeps/{id}``; ``static/js/sweep.js``
draws it, moves the step slider and the score choice (kept in the URL), and refreshes the
heatmaps and the table while cells are still training.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.names import PEAKY_THRES
from server.deps import CurrentAccess, ReadSession, ScoreQuery, StepQuery, SweepId
from server.pages.populations import render
from server.views import sweeps as views

read = APIRouter(include_in_schema=False)
write = APIRouter()


@read.get("/sweeps")
def sweeps_page(request: Request, session: ReadSession, access: CurrentAccess) -> Response:
    return request.app.state.templates.TemplateResponse(request, "sweeps.html", {
        "access": access, "data": views.sweeps_index(session, access=access)})


@read.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep_id: SweepId, session: ReadSession, access: CurrentAccess,
               step: StepQuery = None, score: ScoreQuery = PEAKY_THRES) -> Response:
    return render(request, access, "sweep.html",  # a step beyond the last snapshot: the 422 page naming `step`
                  lambda: views.sweep_view(session, sweep_id=sweep_id, access=access, step=step, score=score),
                  api_url=access.url(f"/api/sweeps/{sweep_id}"), share_kind="sweep", share_run_ids=[],
                  share_sweep_id=sweep_id)
