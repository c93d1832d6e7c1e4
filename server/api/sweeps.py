"""Sweeps over JSON: launch a grid of runs, and read it back as the paper's scaling figures.

    POST /api/sweeps   {"name": "width x length", "preset": "fast-parity", "overrides": {"steps": 500},
                        "axes": {"d_model": [32, 64], "max_len": [4, 8]}, "seeds": [0, 1]}
        -> 201 {"id": 4, "job_id": 17, "url": "/sweeps/4", "cells": 8}       (422 naming the field on bad input)
    GET  /api/sweeps/4 -> every cell with its run's final test accuracy and each circuit head's
                          peaky_thres, and heatmaps of those over the two swept axes (mean over seeds)

Creating validates every cell (``SweepSpec.parse``), inserts the sweep and its sweep job
(``core.sweeps.create_sweep``), commits, then dispatches the job; a worker expands it into one run
per cell. The grid is read with ``core.sweeps.sweep_cells``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from core.db.models import Sweep
from core.db.session import session_scope
from core.names import ROLES
from core.specs.errors import SpecError
from core.specs.sweep import MAX_SWEEP_CELLS, SweepSpec
from core.submit import dispatch
from core.summary import ROLE_TITLES
from core.sweeps import create_sweep, sweep_cells
from server import figures_compare as F
from server.access import Access, get_access
from server.deps import SweepId, read_session

read = APIRouter(tags=["sweeps"])
write = APIRouter(tags=["sweeps"])

class SweepIn(BaseModel):
    """The body of POST /api/sweeps: SweepSpec's fields and a name."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    preset: str | None = Field(None, max_length=100)
    overrides: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, Annotated[list[float | int], Field(max_length=MAX_SWEEP_CELLS)]] = Field(default_factory=dict, max_length=2)
    seeds: list[int] | None = Field(None, max_length=MAX_SWEEP_CELLS)

    def n_cells(self) -> int:
        count = len(self.seeds) if self.seeds else 1
        for values in self.axes.values():
            count *= len(values)
        return count


class SweepCreated(BaseModel):
    id: int
    job_id: int
    url: str
    cells: int


def _mean(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None and not math.isnan(v)]
    return sum(real) / len(real) if real else None


def cell_values(run: dict | None) -> dict[str, float | None]:
    """A cell run's figures: final test seq_acc and each circuit head's final peaky_thres."""
    summary = (run or {}).get("summary") or {}
    values = {"test_seq_acc": ((summary.get("accuracy") or {}).get("test") or {}).get("seq_acc")}
    for role in ROLES:
        head = (summary.get("heads") or {}).get(role) or {}
        values[role] = (head.get("scores") or {}).get("peaky_thres")
    return values


def grid_axes(axes: dict[str, list]) -> tuple[str | None, list, str | None, list]:
    """The heatmap's axes: the first two swept keys other than seed (x, y), seed when nothing else varies."""
    keys = [key for key in axes if key != "seed"] or [key for key in axes]
    x_key = keys[0] if keys else None
    y_key = keys[1] if len(keys) > 1 else None
    return x_key, list(axes.get(x_key, [None])) if x_key else [None], y_key, list(axes.get(y_key, [None])) if y_key else [None]


def build_sweep(session: Session, *, sweep_id: int, access: Access) -> dict[str, Any]:
    access.require_sweep(sweep_id)
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise HTTPException(status_code=404, detail=f"no sweep {sweep_id}")
    cells = []
    for cell in sweep_cells(session, sweep_id=sweep_id):
        run = cell["run"]
        cells.append({"cell": cell["cell"], "label": cell["label"], **cell_values(run), "run": None if run is None else {
            "id": run["id"], "name": run["name"], "status": run["status"], "step": run["step"],
            "total_steps": run["total_steps"], "url": access.url(f"/runs/{run['id']}")}})
    x_key, x_values, y_key, y_values = grid_axes(sweep.axes or {})
    figures = []
    links: list[list[str | None]] = [[None for _ in x_values] for _ in y_values]
    for metric, title in (("test_seq_acc", "final test seq_acc"),
                          *((role, f"{ROLE_TITLES[role]} peaky_thres") for role in ROLES)):
        groups: dict[tuple, list] = defaultdict(list)
        for cell in cells:
            groups[(cell["cell"].get(x_key), cell["cell"].get(y_key))].append(cell[metric])
        z = [[_mean(groups.get((x, y), [])) for x in x_values] for y in y_values]
        figures.append({"key": metric, "figure": F.grid_figure(
            x_values=x_values, y_values=y_values, z=z, x_title=x_key or "", y_title=y_key or "",
            title=f"{title} (mean over seeds)")})
    for cell in cells:  # the first run of each (x, y) cell, for a click on the heatmap
        x, y = cell["cell"].get(x_key), cell["cell"].get(y_key)
        if cell["run"] is not None and x in x_values and y in y_values:
            i, j = y_values.index(y), x_values.index(x)
            links[i][j] = links[i][j] or cell["run"]["url"]
    return {"id": sweep.id, "name": sweep.name, "preset": sweep.preset, "axes": sweep.axes,
            "created_at": sweep.created_at.isoformat() if sweep.created_at else None,
            "x": {"key": x_key, "values": x_values}, "y": {"key": y_key, "values": y_values},
            "cells": cells, "figures": figures, "links": links,
            "done": sum(1 for c in cells if c["run"] and c["run"]["status"] == "SUCCEEDED"), "total": len(cells)}


@write.post("/api/sweeps", status_code=201, response_model=SweepCreated)
def new_sweep(body: SweepIn, request: Request, access: Access = Depends(get_access)) -> SweepCreated:
    access.require_owner()
    n_cells = body.n_cells()
    if n_cells > MAX_SWEEP_CELLS:  # before SweepSpec builds the grid; SpecError -> the common 422 body
        raise SpecError([("axes", f"{n_cells} cells; a sweep may have at most {MAX_SWEEP_CELLS}")])
    spec = SweepSpec.parse(body.model_dump(exclude={"name"}, exclude_none=True))  # SpecError -> 422
    with session_scope(request.app.state.engine) as session:
        created = create_sweep(session, spec=spec, name=body.name)
    dispatch(request.app.state.settings, [created.job_id])  # after the commit, so a worker finds the row
    return SweepCreated(id=created.sweep_id, job_id=created.job_id, url=f"/sweeps/{created.sweep_id}", cells=n_cells)


@read.get("/api/sweeps/{sweep_id}")
def get_sweep(sweep_id: SweepId, session: Session = Depends(read_session),
              access: Access = Depends(get_access)) -> dict:
    return build_sweep(session, sweep_id=sweep_id, access=access)
