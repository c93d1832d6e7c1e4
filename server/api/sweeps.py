"""Sweeps over JSON: launch a grid of runs, and read it back as the paper's scaling figures.

    POST /api/sweeps   {"name": "width x length", "preset": "fast-parity", "overrides": {"steps": 500},
                        "axes": {"d_model": [32, 64], "max_len": [4, 8]}, "seeds": [0, 1]}
        -> 201 {"id": 4, "job_id": 17, "url": "/sweeps/4", "cells": 8, "created": true}   (422 naming the field)
       with "idempotency_key": "k1" sent again: 200, the earlier sweep, "created": false (409 if its grid differs)
    GET  /api/sweeps   -> every sweep and seed set: its kind, cell count and runs by status
    GET  /api/sweeps/4[?step=2000&score=peaky_abs]
                       -> every cell with its run's test accuracy and each circuit head's score (final,
                          or at a snapshot step: 422 naming ``step`` beyond the last), heatmaps of those
                          over the two swept axes (mean over seeds, the spread on hover), the snapshot steps
    POST /api/sweeps/4/cancel -> {"id": 4, "cancelled_at": "...", "cells": [{"label", "run_id", "status"}, ...]}

Creating validates every cell (``SweepSpec.parse``), inserts the sweep and its sweep job
(``core.sweeps.create_sweep``), commits, then dispatches the job; a worker expands it into one run
per cell. Reading is ``server.views.sweeps.sweep_view``, which the sweep page renders too. Cancelling
is ``core.sweeps.cancel_sweep``: the sweep job (expanded or not) and every cell's train job, in one
transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from core.db.session import session_scope
from core.names import PEAKY_THRES
from core.packing import parse_seeds
from core.specs.errors import SpecError
from core.specs.sweep import MAX_SWEEP_CELLS, SweepSpec
from core.submit import dispatch
from core.sweeps import SweepError, cancel_sweep, create_sweep
from core.submit import KeyReused
from server.deps import CurrentAccess, OwnerAccess, ReadSession, ScoreQuery, StepQuery, SweepId
from server.errors import NotFound
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
    seeds: list[int] | str | None = Field(None, max_length=MAX_SWEEP_CELLS)  # or "0-99", "0,3,5" (the form's)
    pack_size: int | None = None  # train jobs per pack; None: each worker's choice (docs/packed.md)
    idempotency_key: str | None = Field(None, min_length=1, max_length=100,
                                        description="the same key again returns the earlier sweep (one sweep per key)")

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
    created: bool = True  # False: the idempotency_key was seen before; this is that earlier sweep (status 200)


class CellStatus(BaseModel):
    label: str
    run_id: int | None  # None: the cell was never expanded into a run (it never will be now)
    status: str | None


class SweepCancelled(BaseModel):
    id: int
    cancelled_at: str | None
    cells: list[CellStatus]


@write.post("/api/sweeps", status_code=201, response_model=SweepCreated, responses={200: {"model": SweepCreated}})
def new_sweep(body: SweepIn, request: Request, _owner: OwnerAccess) -> Any:
    if isinstance(body.seeds, str):
        body = body.model_copy(update={"seeds": parse_seeds(body.seeds)})  # SpecError naming "seeds" -> 422
    n_cells = body.n_cells()
    if n_cells > MAX_SWEEP_CELLS:  # before SweepSpec builds the grid; SpecError -> the common 422 body
        raise SpecError([("axes", f"{n_cells} cells; a sweep may have at most {MAX_SWEEP_CELLS}")])
    spec = SweepSpec.parse(body.model_dump(exclude={"name", "idempotency_key"}, exclude_none=True))  # SpecError -> 422
    engine, key = request.app.state.engine, body.idempotency_key
    try:
        try:
            with session_scope(engine) as session:
                created = create_sweep(session, spec=spec, name=body.name, key=key)
        except IntegrityError:
            if key is None:
                raise
            with session_scope(engine) as session:  # a concurrent request with the same key won the race
                created = create_sweep(session, spec=spec, name=body.name, key=key)
    except KeyReused as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    if created.created:
        dispatch(request.app.state.settings, [created.job_id])  # after the commit, so a worker finds the row
    answer = SweepCreated(id=created.sweep_id, job_id=created.job_id, url=f"/sweeps/{created.sweep_id}",
                          cells=n_cells, created=created.created)
    return answer if created.created else JSONResponse(answer.model_dump(), status_code=200)


@write.post("/api/sweeps/{sweep_id}/cancel", response_model=SweepCancelled,
            summary="Cancel a sweep: its job (expanded or not) and every cell's run, in one request")
def cancel(sweep_id: SweepId, request: Request, _owner: OwnerAccess) -> SweepCancelled:
    try:
        with session_scope(request.app.state.engine) as session:
            cells = cancel_sweep(session, sweep_id=sweep_id)
            stamp = views.cancelled_at(session, sweep_id=sweep_id)
    except SweepError as exc:
        raise NotFound(str(exc)) from None
    return SweepCancelled(id=sweep_id, cancelled_at=stamp, cells=[
        CellStatus(label=cell["label"], run_id=cell["run"]["id"] if cell["run"] else None,
                   status=cell["run"]["status"] if cell["run"] else None) for cell in cells])


@read.get("/api/sweeps")
def list_sweeps(session: ReadSession, access: CurrentAccess) -> dict:
    return views.sweeps_index(session, access=access)


@read.get("/api/sweeps/{sweep_id}")
def get_sweep(sweep_id: SweepId, session: ReadSession, access: CurrentAccess, step: StepQuery = None,
              score: ScoreQuery = PEAKY_THRES) -> dict:
    return views.sweep_view(session, sweep_id=sweep_id, access=access, step=step, score=score)
