"""Interventions over JSON: launch causal tests on a run's checkpoints, and read the results back.

    POST /api/runs/7/interventions  {"kind": "edge", "heads": ["L1H3"], "steps": "all"}
        -> 201 {"job_id": 31, "run_id": 7}          (422 naming the field on bad input, 404 for no run)
    GET  /api/runs/7/interventions
        -> {"run_id": 7, "steps": [...], "series": [...], "verdict": {...}, "heads": {...},
            "jobs": [{"id": 31, "status": "RUNNING", "progress": {"done": 3, "total": 8, "eta_s": 12.0}, ...}]}

The body is a ``core.causal.specs.InterventionSpec``; the job is queued with
``core.db.jobs.submit_intervention_job`` and dispatched after the commit. Reading groups the stored
results per (intervention, target) for charts (``core.causal.results.for_charts``), next to the
circuit heads' peakiness and the causal verdict (``core.summary.causal_verdict``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from core.causal import results
from core.causal.specs import InterventionSpec
from core.db import crud, jobs
from core.db.session import session_scope
from core.submit import dispatch
from core.summary import causal_verdict, run_summary
from server.deps import CurrentAccess, OwnerAccess, ReadSession, RunId
from server.errors import NotFound

read = APIRouter(tags=["interventions"])
write = APIRouter(tags=["interventions"])


class InterventionQueued(BaseModel):
    job_id: int
    run_id: int


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
            summary="Queue an intervention job on a run's checkpoints")
def create_intervention(request: Request, run_id: RunId, spec: InterventionSpec,
                        _owner: OwnerAccess) -> InterventionQueued:
    with session_scope(request.app.state.engine) as session:
        if crud.get_run(session, run_id=run_id) is None:
            raise NotFound(f"no run {run_id}")
        job_id = jobs.submit_intervention_job(session, run_id=run_id, spec=spec.model_dump(mode="json")).id
    dispatch(request.app.state.settings, [job_id])  # after the commit
    return InterventionQueued(job_id=job_id, run_id=run_id)
