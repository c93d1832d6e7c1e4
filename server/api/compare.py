"""``GET /api/compare?runs=3,5[,8]``: the JSON twin of ``/compare`` (``server.views.compare`` builds both).

For every run the same probe sequence and head at linked steps (``link=step``: nearest the same
optimizer step; ``link=fraction``: nearest the same fraction of training), the difference map of
the first two runs, their curves overlaid and the spec keys that differ, as plotly dicts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from server.deps import CurrentAccess, ReadSession
from server.views import compare as views

read = APIRouter(tags=["compare"])
write = APIRouter()


@read.get("/api/compare")
def compare(session: ReadSession, access: CurrentAccess,
            runs: Annotated[str, Query(max_length=200, description="2 to 4 run ids, comma-separated")],
            step: Annotated[int | None, Query(ge=0, le=10**9)] = None,
            link: Literal["step", "fraction"] = "step",
            layer: Annotated[int | None, Query(ge=0, le=64)] = None,
            head: Annotated[int | None, Query(ge=0, le=256)] = None,
            probe: Annotated[int | None, Query(ge=0, le=100_000)] = None) -> dict:
    return views.compare_view(session, access=access, run_ids=views.parse_run_ids(runs), step=step, link=link,
                              layer=layer, head=head, probe=probe)
