"""Sweeps over JSON: launch a grid of runs, and read it back as the paper's scaling figures.

    POST /api/sweeps   {"name": "width x length", "preset": "fast-parity", "overrides": {"steps": 500},
                        "axes": {"d_model": [32, 64], "max_len": [4, 8]}, "seeds": [0, 1]}
        -> 201 {"id": 4, "job_id": 17, "url": "/sweeps/4", "cells": 8}       (422 naming the field on bad input)
    GET  /api/sweeps   -> every sweep and seed set: its kind, cell count and runs by status
    GET  /api/sweeps/4[?step=2000&score=peaky_abs]
                       -> every cell with its run's test accuracy and each circuit head's score (final,
                          or at a snapshot step: 422 naming ``step`` beyond the last), heatmaps of those
                          over the two swept axes (mean over seeds, the spread on hover), the snapshot steps

Creating validates every cell (``SweepSpec.parse``), inserts the sweep and its sweep job
(``core.sweeps.create_sweep``), commits, then dispatches the job; a worker expands it into one run
per cell. Reading is ``server.views.sweeps.sweep_view``, which the sweep page renders too.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from core.db.session import session_scope
from core.names import PEAKY_THRES
from core.specs.errors import SpecError
from core.specs.sweep import MAX_SWEEP_CELLS, SweepSpec
from core.submit import dispatch
from core.sweeps import create_sweep
from server.deps import CurrentAccess, OwnerAccess, ReadSession, ScoreQuery, StepQuery, SweepId
from server.views import sweeps as views

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
    pack_size: int | None = None  # train jobs per pack; None: each worker's choice (docs/packed.md)

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


@write.post("/api/sweeps", status_code=201, response_model=SweepCreated)
def new_sweep(body: SweepIn, request: Request, _owner: OwnerAccess) -> SweepCreated:
    n_cells = body.n_cells()
    if n_cells > MAX_SWEEP_CELLS:  # before SweepSpec builds the grid; SpecError -> the common 422 body
        raise SpecError([("axes", f"{n_cells} cells; a sweep may have at most {MAX_SWEEP_CELLS}")])
    spec = SweepSpec.parse(body.model_dump(exclude={"name"}, exclude_none=True))  # SpecError -> 422
    with session_scope(request.app.state.engine) as session:
        created = create_sweep(session, spec=spec, name=body.name)
    dispatch(request.app.state.settings, [created.job_id])  # after the commit, so a worker finds the row
    return SweepCreated(id=created.sweep_id, job_id=created.job_id, url=f"/sweeps/{created.sweep_id}", cells=n_cells)


@read.get("/api/sweeps")
def list_sweeps(session: ReadSession, access: CurrentAccess) -> dict:
    return views.sweeps_index(session, access=access)


@read.get("/api/sweeps/{sweep_id}")
def get_sweep(sweep_id: SweepId, session: ReadSession, access: CurrentAccess, step: StepQuery = None,
              score: ScoreQuery = PEAKY_THRES) -> dict:
    return views.sweep_view(session, sweep_id=sweep_id, access=access, step=step, score=score)
