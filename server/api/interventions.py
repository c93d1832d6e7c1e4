"""Interventions over JSON: launch causal tests on a run's checkpoints, and read the results back.

    POST /api/runs/7/interventions  {"kind": "edge", "heads": ["L1H3"], "steps": "all"}
        -> 201 {"job_id": 31, "run_id": 7}          (404 for no run; 422 naming the field on bad input,
                                                      "L9H9" in a 2-layer run included: nothing is queued)
    POST /api/sweeps/4/interventions  {"kind": "pattern", "variants": ["ideal"], "steps": "last"[, "skip_missing": true]}
        -> 201 {"sweep_id": 4, "jobs": [{"run_id": 21, "job_id": 40}, ...], "skipped": [], "url": "/seed-sets/4"}
                                                     (every member validated, one job each, one transaction;
                                                      404 for no sweep, 422 naming the field: nothing is queued)
    GET  /api/runs/7/interventions
        -> {"run_id": 7, "steps": [...], "series": [...], "verdict": {...}, "heads": {...},
            "jobs": [{"id": 31, "status": "RUNNING", "progress": {"done": 3, "total": 8, "eta_s": 12.0}, ...}]}

The body is a ``core.causal.specs.InterventionSpec``; on a sweep, ``core.causal.population`` checks it
against every member and queues one job per member (its results: ``GET /api/seed-sets/{id}/interventions``).
A run's job is queued with
``core.db.jobs.submit_intervention_job`` and dispatched after the commit. Reading groups the stored
results per (intervention, target) for charts (``core.causal.results.for_charts``), next to the
circuit heads' peakiness and the causal verdict (``core.summary.causal_verdict``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel

from core.causal import results
from core.causal.population import submit_population_intervention
from core.causal.specs import parse_for_run
from core.db import crud, jobs
from core.names import CHECKPOINT_WEIGHTS
from core.db.session import session_scope
from core.submit import dispatch
from core.summary import causal_verdict, run_summary
from core.sweeps import SweepError
from server.deps import MAX_ID, CurrentAccess, OwnerAccess, ReadSession, RunId, SweepId
from server.errors import NotFound

read = APIRouter(tags=["interventions"])
write = APIRouter(tags=["interventions"])


class InterventionQueued(BaseModel):
    job_id: int
    run_id: int


class MemberJob(BaseModel):
    run_id: int
    job_id: int


class SkippedMember(BaseModel):
    run_id: int
    member: str  # "seed 3 (run 12)"
    reason: str


class PopulationQueued(BaseModel):
    sweep_id: int
    jobs: list[MemberJob]
    skipped: list[SkippedMember]  # only with "skip_missing": true
    url: str  # the page that draws the results


@read.get("/api/runs/{run_id}/interventions", summary="A run's intervention results, grouped for charts")
def list_interventions(run_id: RunId, access: CurrentAccess, session: ReadSession) -> dict[str, Any]:
    access.require_run(run_id)
    run = crud.get_run(session, run_id=run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    rows = results.list_results(session, run_id=run_id)
    summary = run_summary(session, run)
    recent = [{"id": job.id, "status": job.status, "progress": job.progress or {},
               "error": None if access.readonly else job.error,  # a failure's text stays with the owner
               "spec": (job.payload or {}).get("spec", {})}
              for job in jobs.intervention_jobs(session, run_id=run_id)]
    return {"run_id": run_id, **results.for_charts(rows), "heads": summary.get("heads", {}),
            "verdict": causal_verdict(summary, rows), "jobs": recent}


@write.post("/api/runs/{run_id}/interventions", status_code=201, response_model=InterventionQueued,
            summary="Queue an intervention job on a run's checkpoints",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "object", "description": "an InterventionSpec (docs/causal.md)"}}}}})
def create_intervention(request: Request, run_id: RunId, body: Annotated[dict[str, Any], Body()],
                        _owner: OwnerAccess) -> InterventionQueued:
    """422 naming every bad field at once, in the words of a run spec's errors, before anything is
    queued: the spec's own values and what does not fit this run (``core.causal.specs.parse_for_run``:
    a head it lacks, a step it did not record, a source run that is not there)."""
    with session_scope(request.app.state.engine) as session:
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        source_id = body.get("source_run")
        known_id = isinstance(source_id, int) and not isinstance(source_id, bool) and 1 <= source_id <= MAX_ID
        source = crud.get_run(session, run_id=source_id) if known_id else None
        spec = parse_for_run(body, run_spec=run.spec or {}, summary=run_summary(session, run),
                             weights_steps=crud.checkpoint_steps(session, run_id=run_id, kind=CHECKPOINT_WEIGHTS),
                             source_spec=source.spec if source is not None else None)
        job_id = jobs.submit_intervention_job(session, run_id=run_id, spec=spec.model_dump(mode="json")).id
    dispatch(request.app.state.settings, [job_id])  # after the commit
    return InterventionQueued(job_id=job_id, run_id=run_id)


@write.post("/api/sweeps/{sweep_id}/interventions", status_code=201, response_model=PopulationQueued,
            summary="Queue the same intervention on every member of a seed set or sweep",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "object", "description": "an InterventionSpec and skip_missing (docs/causal.md)"}}}}})
def create_population_intervention(request: Request, sweep_id: SweepId, body: Annotated[dict[str, Any], Body()],
                                   _owner: OwnerAccess) -> PopulationQueued:
    """422 naming every bad field, before anything is queued: the spec's own values, what does not fit
    some members (named), and members without the requested checkpoint (unless ``skip_missing``)."""
    try:
        with session_scope(request.app.state.engine) as session:
            queued = submit_population_intervention(session, sweep_id=sweep_id, body=body)
    except SweepError as exc:
        raise NotFound(str(exc)) from None
    dispatch(request.app.state.settings, queued.job_ids)  # after the commit
    return PopulationQueued(sweep_id=sweep_id, jobs=[MemberJob(run_id=r, job_id=j) for r, j in queued.jobs],
                            skipped=[SkippedMember(**s) for s in queued.skipped],
                            url=f"/seed-sets/{sweep_id}" if queued.seed_set else f"/sweeps/{sweep_id}")
