"""Queue work: insert the run and its job, commit, then dispatch the job id (docs/architecture.md, "Data flow").

    with session_scope(engine) as session:
        queued = submit_run(session, spec=spec, name="small", preset="fast-parity", key=idempotency_key)
    dispatch(settings, [queued.job_id])          # after the commit, never before

The API, the CLI and a sweep's expansion all come through here, so a run always has its train job,
a submit key makes one run however often it is sent, and the queue only ever carries job ids.
Torch-free.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import crud, jobs
from core.db.models import Run, Status
from core.packing import pack_key, shape_difference
from core.settings import Settings
from core.specs.errors import SpecError
from core.specs.run import RunSpec, parse_init_from

log = logging.getLogger("core.submit")


@dataclass(frozen=True)
class Queued:
    run_id: int
    job_id: int
    created: bool  # False: the submit key was seen before, and this is that earlier run


def submit_run(session: Session, *, spec: RunSpec, name: str | None = None, preset: str | None = None,
               key: str | None = None, tags: Sequence[str] = (), notes: str = "",
               sweep_id: int | None = None, sweep_cell: dict | None = None, pack_size: int | None = None) -> Queued:
    """Insert a QUEUED run of ``spec`` and its train job (flushed; the caller's scope commits).

    With a submit ``key`` already used, nothing is inserted and the earlier run is returned. The job
    carries the spec's pack key, so a worker may train it in a pack with compatible queued runs
    (``core.packing``); ``pack_size`` is the submitter's members per pack (1: never packed).
    """
    if key is not None:
        earlier = session.scalars(select(Run).where(Run.idempotency_key == key)).first()
        if earlier is not None:
            check_same_request(earlier, key=key, spec=spec, name=name)
            job = jobs.latest_train_job(session, run_id=earlier.id)
            return Queued(run_id=earlier.id, job_id=job.id if job else 0, created=False)
    parent = spec.train.init_source
    run = crud.create_run(session, spec=spec.to_flat(), name=name, preset=preset, tags=tags, notes=notes,
                          parent_run_id=parent[0] if parent else None, parent_step=parent[1] if parent else None,
                          sweep_id=sweep_id)
    run.idempotency_key = key
    run.sweep_cell = dict(sweep_cell) if sweep_cell is not None else None
    job = jobs.submit_train_job(session, run_id=run.id, pack_key=pack_key(spec), pack_size=pack_size)
    return Queued(run_id=run.id, job_id=job.id, created=True)


class KeyReused(ValueError):
    """A submit key already made a run from another request (the API answers 409)."""


def check_same_request(earlier: Run, *, key: str, spec: RunSpec, name: str | None) -> None:
    """A key names one request: sent again with another spec or name, it is refused (as payment
    APIs refuse an idempotency key reused with other parameters), never silently answered with the
    earlier run."""
    flat = spec.to_flat()
    differ = [f"{field} {earlier.spec.get(field)!r} against {flat.get(field)!r}"
              for field in sorted(set(flat) | set(earlier.spec or {})) if (earlier.spec or {}).get(field) != flat.get(field)]
    if name is not None and name != earlier.name:
        differ.append(f"name {earlier.name!r} against {name!r}")
    if differ:
        raise KeyReused(f"idempotency_key {key!r} already made run {earlier.id} from another request "
                        f"({', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''}); use a new key for a new run")


def check_init_from(session: Session, init_from: str | None, *, spec: RunSpec | None = None) -> None:
    """``init_from`` ("RUN@STEP") must name a run and a step at which it has a checkpoint (or, for a
    run still queued or training, a step at which it will record weights: the new run's job then
    waits for them), and (given the new run's ``spec``) a run whose weights have the new run's
    shape. SpecError names ``init_from``."""
    if not init_from:
        return
    run_id, step = parse_init_from(init_from)
    parent = crud.get_run(session, run_id=run_id)
    if parent is None:
        raise SpecError([("init_from", f"there is no run {run_id} (got {init_from!r})")])
    steps = crud.checkpoint_steps(session, run_id=run_id)
    if step not in steps and not (parent.status in LIVE and will_record_weights(parent, step)):
        shown = ", ".join(str(s) for s in steps[-12:]) or "none yet"
        raise SpecError([("init_from", f"run {run_id} has no checkpoint at step {step}; its checkpoint steps: {shown}")])
    if spec is not None:
        try:
            differ = shape_difference(spec, RunSpec.from_flat(parent.spec))
        except SpecError:
            differ = None  # a parent whose spec no longer parses: loading its weights will tell
        if differ:
            raise SpecError([("init_from", f"run {run_id}'s weights do not fit this model ({differ})")])


LIVE = (Status.QUEUED.value, Status.RUNNING.value)


def will_record_weights(run: Run, step: int) -> bool:
    """Whether ``run``, once trained that far, has a weights checkpoint at ``step`` (kept at its
    snapshot steps and its last step)."""
    spec = run.spec or {}
    steps, every = int(spec.get("steps") or 0), int(spec.get("snapshot_every") or 0)
    return 0 <= step <= steps and (step == steps or (every > 0 and step % every == 0))


def dispatch(settings: Settings, job_ids: Sequence[int]) -> None:
    """Hand committed QUEUED jobs to the workers.

    Embedded (no broker URL): nothing to send; local workers poll the jobs table. With a broker,
    each id is published to Celery by task name on its job's queue (``core.names.EXECUTE_JOB_TASK``).
    Never raises: the jobs are committed already, so a broker that stays away after publish's retries
    is only logged; the Celery workers' upkeep thread re-publishes QUEUED jobs left unclaimed.
    """
    if not settings.broker_url or not job_ids:
        return
    from core.celery_client import publish  # imported only when a broker is configured

    try:
        publish(settings, job_ids)
    except Exception as exc:  # noqa: BLE001 - kombu, redis or socket errors alike: the jobs stay QUEUED
        log.warning("jobs %s: not published yet (the upkeep thread re-publishes them): %s",
                    ", ".join(map(str, job_ids)), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
