"""The runs API: queue runs, list and read them, their metrics, snapshots and downloads; cancel, retry.

    POST /api/runs                      {"preset": "fast-polynomial", "overrides": {"seed": 3}} -> 201 {"id", "url"}
    GET  /api/runs?status=RUNNING&tag=x&q=text&sort=-acc&limit=50&offset=0
    GET  /api/runs/7                    status, progress, config, summary, lineage
    GET  /api/runs/7/metrics?prefix=test/&format=series
    GET  /api/runs/7/snapshots/250?probe=3    one probe sequence, every layer and head (< 64 KB)
    GET  /api/runs/7/attention.gif?layer=1&head=0&probe=3   that head at every snapshot step, animated

Reads (``read``) are also served under a share link (``/s/{token}/api/...``) for the runs it names;
writes (``write``) are the owner's. Every 4xx is JSON ``{"detail": "..."}``; bad input (422) is
``{"detail": [{"field", "msg"}, ...]}``, one shape for a bad request and a bad spec alike (the
handlers of ``server.errors``: a ``SpecError`` or ``NotFound`` raised anywhere below reaches them).
Routes stay thin: reads are ``server.views.runs``, new runs ``server.submit``.
"""

from __future__ import annotations

import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from core.db import crud, jobs
from core.db.jobs import JobNotFound
from core.db.models import CheckpointKind
from core.db.session import session_scope
from core.names import SCORE_PATTERN
from core.submit import dispatch
from core.summary import run_summary
from server import animation, cache, figures
from server.deps import CurrentAccess, OwnerAccess, ReadSession, RunId, StepPath
from server.errors import NotFound
from server.views import runs as views
from server.views.schemas import (
    BudgetView,
    Created,
    ErrorBody,
    FigureSet,
    JobAction,
    Metrics,
    RunDetail,
    RunPage,
    SnapshotSteps,
    SnapshotView,
    ValidationErrorBody,
)
from server.submit import SubmitRequest, budget, resolve_spec, submit

read = APIRouter(prefix="/api", tags=["runs"])
write = APIRouter(prefix="/api", tags=["runs"])

ERRORS = {404: {"model": ErrorBody}, 422: {"model": ValidationErrorBody}}


def error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def json_response(model: BaseModel) -> Response:
    """The model as JSON, serialised once (no re-validation of big arrays); GZipMiddleware compresses it."""
    return Response(model.model_dump_json(), media_type="application/json")


# ---------------------------------------------------------------- reads


@read.get("/runs", response_model=RunPage, summary="List runs (filters, sort, pages)")
def list_runs(access: CurrentAccess, session: ReadSession,
              problem: Annotated[str | None, Query(max_length=100)] = None,
              status: Annotated[str | None, Query(pattern="^(?i:QUEUED|RUNNING|SUCCEEDED|FAILED|CANCELLED)$")] = None,
              tag: Annotated[str | None, Query(max_length=50)] = None,
              q: Annotated[str | None, Query(max_length=200, description="text in the name or notes")] = None,
              sort: Annotated[str, Query(pattern="^-?(created|name|status|step|acc)$")] = "-created",
              limit: Annotated[int, Query(ge=1, le=views.MAX_LIMIT)] = 50,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> RunPage:
    query = views.RunQuery(problem=problem, status=status, tag=tag, q=q, sort=sort, limit=limit, offset=offset,
                           run_ids=access.run_ids)
    return views.list_runs(session, query=query)


@read.get("/runs/{run_id}", response_model=RunDetail, responses=ERRORS, summary="One run")
def get_run(request: Request, run_id: RunId, access: CurrentAccess,
            session: ReadSession) -> Any:
    access.require_run(run_id)
    return cache.finished(request, session, run_id=run_id,  # a finished run: from memory, with an ETag
                          render=lambda: json_response(views.run_detail(session, run_id=run_id, access=access)))


@read.get("/runs/{run_id}/metrics", response_model=Metrics, responses=ERRORS, summary="A run's metrics")
def get_metrics(request: Request, run_id: RunId, access: CurrentAccess,
                session: ReadSession,
                keys: Annotated[str | None, Query(max_length=5000, description="comma-separated metric keys")] = None,
                prefix: Annotated[str | None, Query(max_length=200, description="e.g. test/ or score/iteration/")] = None,
                format: Annotated[str, Query(pattern="^(long|series)$")] = "long") -> Any:
    access.require_run(run_id)
    wanted = [key.strip() for key in keys.split(",") if key.strip()] if keys else None
    return cache.finished(request, session, run_id=run_id, render=lambda: json_response(
        views.metrics(session, run_id=run_id, keys=wanted, prefix=prefix, grouped=format == "series")))


@read.get("/runs/{run_id}/snapshots", response_model=SnapshotSteps, responses=ERRORS, summary="Snapshot steps")
def get_snapshot_steps(run_id: RunId, access: CurrentAccess,
                       session: ReadSession) -> Any:
    access.require_run(run_id)
    return SnapshotSteps(run_id=run_id, steps=views.snapshot_steps(session, run_id=run_id))


@read.get("/runs/{run_id}/snapshots/{step}", response_model=SnapshotView, responses=ERRORS,
          summary="One probe sequence's attention at one step, every layer and head")
def get_snapshot(run_id: RunId, step: StepPath, access: CurrentAccess,
                 session: ReadSession,
                 probe: Annotated[int, Query(ge=0, le=100_000, description="index in the probe set")] = 0) -> Any:
    access.require_run(run_id)
    return json_response(views.snapshot_view(session, run_id=run_id, step=step, probe=probe))


@read.get("/runs/{run_id}/figures", response_model=FigureSet, responses=ERRORS, summary="The run page's plotly figures (for live updates)")
def get_figures(request: Request, run_id: RunId, access: CurrentAccess,
                session: ReadSession,
                score: Annotated[str, Query(pattern=SCORE_PATTERN)] = "peaky_thres") -> Any:
    access.require_run(run_id)

    def render() -> Response:
        run = views.get_run(session, run_id=run_id)
        rows = views.figure_rows(session, run_id=run_id, score=score)
        return json_response(FigureSet(figures=figures.run_figures(rows, run_summary(session, run), score=score)))  # so far, while live
    return cache.finished(request, session, run_id=run_id, render=render)


@read.get("/runs/{run_id}/attention.gif", responses={200: {"content": {"image/gif": {}}}, **ERRORS},
          response_class=Response, summary="One head's attention on one probe at every snapshot step, as an animated GIF")
def get_attention_gif(run_id: RunId, access: CurrentAccess, session: ReadSession,
                      layer: Annotated[int, Query(ge=0, le=1000)] = 0,
                      head: Annotated[int, Query(ge=0, le=1000)] = 0,
                      probe: Annotated[int, Query(ge=0, le=100_000, description="index in the probe set")] = 0) -> Response:
    access.require_run(run_id)
    frames = views.head_over_training(session, run_id=run_id, layer=layer, head=head, probe=probe)  # 404 / 422
    filename = f"run{run_id}-L{layer}H{head}-probe{probe}.gif"
    return Response(animation.attention_gif(frames), media_type="image/gif",
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})


# ---------------------------------------------------------------- downloads


def _attachment(body: bytes, filename: str, media_type: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@read.get("/runs/{run_id}/download/metrics.json", responses=ERRORS, summary="Download every metric (long form)")
def download_metrics(run_id: RunId, access: CurrentAccess,
                     session: ReadSession) -> Response:
    access.require_run(run_id)
    body = views.metrics(session, run_id=run_id).model_dump_json().encode()
    return _attachment(body, f"run{run_id}-metrics.json", "application/json")


@read.get("/runs/{run_id}/download/snapshots.npz", responses=ERRORS,
          summary="Download every snapshot (numpy npz: step_<n> [probe, layer, head, query, key] float16)")
def download_snapshots(run_id: RunId, access: CurrentAccess,
                       session: ReadSession) -> Response:
    access.require_run(run_id)
    arrays = views.all_snapshots(session, run_id=run_id)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return _attachment(buffer.getvalue(), f"run{run_id}-snapshots.npz", "application/octet-stream")


@read.get("/runs/{run_id}/download/checkpoint/{step}", responses=ERRORS,
          summary="Download a checkpoint (torch.save bytes; weights, or resume with the optimizer)")
def download_checkpoint(run_id: RunId, step: StepPath, access: CurrentAccess,
                        session: ReadSession,
                        kind: Annotated[str | None, Query(pattern="^(weights|resume)$")] = None) -> Response:
    access.require_run(run_id)
    kinds = [kind] if kind else [CheckpointKind.WEIGHTS.value, CheckpointKind.RESUME.value]
    for each in kinds:
        try:
            row = crud.get_checkpoint(session, run_id=run_id, step=step, kind=each)
        except crud.CorruptCheckpoint as exc:
            return error(409, str(exc))
        if row is not None:
            return _attachment(row.data, f"run{run_id}-step{step}-{each}.pt", "application/octet-stream")
    steps = crud.checkpoint_steps(session, run_id=run_id)
    raise NotFound(f"run {run_id} has no {kind or ''} checkpoint at step {step}".replace("  ", " ")
                 + f"; checkpoint steps: {', '.join(map(str, steps)) or 'none'}")


# ---------------------------------------------------------------- writes


@write.post("/runs", status_code=201, response_model=Created, responses={200: {"model": Created}, **ERRORS},
            summary="Queue a run (a preset and overrides, or a whole flat spec)")
def create_run(request: Request, body: SubmitRequest, _owner: OwnerAccess) -> Any:
    queued = submit(request.app.state.engine, request.app.state.settings, body)  # SpecError -> 422
    created = Created(id=queued.run_id, url=f"/runs/{queued.run_id}", job_id=queued.job_id, created=queued.created)
    return created if queued.created else JSONResponse(created.model_dump(), status_code=200)


@write.post("/estimate", response_model=BudgetView, responses=ERRORS,
            summary="What a spec would cost (parameters, memory, time), without queueing it")
def estimate(body: SubmitRequest, _owner: OwnerAccess) -> Any:
    return budget(resolve_spec(body))  # SpecError -> 422


def _job_action(request: Request, run_id: int, action: str) -> Any:
    with session_scope(request.app.state.engine) as session:
        run = views.get_run(session, run_id=run_id)
        job = views.latest_train_job(session, run_id=run_id)
        if job is None:
            return error(409, f"run {run_id} has no train job")
        try:
            if action == "cancel":
                jobs.request_cancel(session, job_id=job.id)
            else:
                jobs.retry(session, job_id=job.id)
        except (ValueError, JobNotFound) as exc:
            return error(409, str(exc))
        session.flush()
        session.refresh(run)
        result = JobAction(id=run_id, status=run.status, job_id=job.id, job_status=job.status)
    cache.forget(request, run_id)  # committed: its pages go live (or show the cancel) at once
    if action == "retry":
        dispatch(request.app.state.settings, [result.job_id])  # after the commit
    return result


@write.post("/runs/{run_id}/cancel", response_model=JobAction, responses={409: {"model": ErrorBody}, **ERRORS},
            summary="Cancel the run's job (at once when queued; the worker stops a running one)")
def cancel_run(request: Request, run_id: RunId, _owner: OwnerAccess) -> Any:
    return _job_action(request, run_id, "cancel")


@write.post("/runs/{run_id}/retry", response_model=JobAction, responses={409: {"model": ErrorBody}, **ERRORS},
            summary="Queue a FAILED or CANCELLED run's job again (it resumes from its last checkpoint)")
def retry_run(request: Request, run_id: RunId, _owner: OwnerAccess) -> Any:
    return _job_action(request, run_id, "retry")
