"""The seed-set pages: ``/seed-sets/{id}`` (one seed set as bands over its seeds) and
``/seed-sets/compare?sets=7,9`` (two or more overlaid, with steps to 0.99 accuracy and their ratio).

The data is ``server.views.populations``, the same as ``/api/seed-sets/...``; the figures are drawn
by ``partials/plot.html`` (``static/js/app.js``), and the page's state (the threshold, the sets
compared) is the URL's query, which the pages' GET forms set. Bad input (an empty seed set, a grid, fewer than
two sets) is a 422 page saying which field and why; an unknown sweep is the not-found page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.population import THRESHOLD
from core.specs.errors import SpecError
from server.access import Access
from server.deps import CurrentAccess, ReadSession, SweepId
from server.views import populations as views

read = APIRouter(include_in_schema=False)
write = APIRouter()
PROBLEM_PAGE = "partials/bad_input.html"


def render(request: Request, access: Access, template: str, build: Callable[[], dict[str, Any]],
           **context: Any) -> Response:
    """Render ``template`` with ``build()`` as ``data``, or the bad-input page (422) when it raises SpecError."""
    templates = request.app.state.templates
    try:
        data = build()
    except SpecError as exc:
        return templates.TemplateResponse(request, PROBLEM_PAGE, {"access": access, "errors": exc.errors},
                                          status_code=422)
    return templates.TemplateResponse(request, template, {"access": access, "data": data, **context})


@read.get("/seed-sets/compare")
def compare_page(request: Request, sets: views.SetsQuery, session: ReadSession, access: CurrentAccess,
                 threshold: views.ThresholdQuery = THRESHOLD) -> Response:
    return render(request, access, "population_compare.html", lambda: views.compare_view(
        session, sweep_ids=views.parse_sets(sets), access=access, threshold=threshold))


@read.get("/seed-sets/{sweep_id}")
def seed_set_page(request: Request, sweep_id: SweepId, session: ReadSession, access: CurrentAccess,
                  threshold: views.ThresholdQuery = THRESHOLD) -> Response:
    return render(request, access, "seed_set.html", lambda: views.seed_set_view(
        session, sweep_id=sweep_id, access=access, threshold=threshold),
        share_kind="sweep", share_run_ids=[], share_sweep_id=sweep_id)
