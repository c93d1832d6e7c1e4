"""Train given jobs here and now: the worker inside ``circuitboard train``.

    stop = threading.Event()                       # set it (Ctrl-C) to cancel what is left
    statuses = train_here(engine, settings, job_ids, pack_size=8, stop=stop)

A foreground run is an ordinary job, claimed by this process instead of a worker, so it has
everything a worker's run has: a lease and heartbeats, fenced writes, live progress on the run page
(steps/s, ETA, loss), cancel from the dashboard, packs for a seed set, and a true state whatever
happens to the terminal:

- **Ctrl-C (or SIGTERM)** sets ``stop``: every job still queued or running here is asked to
  cancel; a running one writes its resume checkpoint and ends CANCELLED. It resumes from that
  checkpoint with ``circuitboard train --resume RUN`` or the dashboard's retry.
- **A killed terminal** (SIGKILL, a lost SSH session): the job's lease expires and any worker on
  the database re-queues it and resumes it from its last checkpoint, as for a lost worker.
- **A job another worker took first** (a queued seed-set member a running ``serve`` claimed) is
  left to that worker; ``train_here`` waits for it to end.

Jobs are claimed ``pack_size`` at a time, in order, and each group trains as one pack. Torch-free.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from core.db import jobs
from core.db.models import Status
from core.db.session import session_scope
from core.settings import Settings
from worker.execute import run_claims

WAIT_POLL_SECONDS = 0.5


def train_here(engine: Engine, settings: Settings, job_ids: Sequence[int], *, pack_size: int,
               stop: threading.Event) -> dict[int, str]:
    """Claim and train ``job_ids`` in packs of ``pack_size`` until every one has ended; {job id: status}."""
    worker_id = f"cli:{socket.gethostname()}:{os.getpid()}"
    threading.Thread(target=_cancel_on_stop, args=(engine, list(job_ids), stop), name="cancel-on-stop",
                     daemon=True).start()
    while not stop.is_set():
        with session_scope(engine) as session:
            claims = []
            for job_id in job_ids:
                if len(claims) == pack_size:
                    break
                claim = jobs.claim(session, job_id=job_id, worker_id=worker_id, lease_seconds=settings.lease_seconds)
                if claim is not None:
                    claims.append(claim)
        if not claims:
            break
        run_claims(claims, engine=engine, settings=settings)
    while True:  # members another worker took, or a cancel still being written
        statuses = final_statuses(engine, job_ids)
        if all(status in jobs.TERMINAL for status in statuses.values()):
            return statuses
        time.sleep(WAIT_POLL_SECONDS)


def final_statuses(engine: Engine, job_ids: Sequence[int]) -> dict[int, str]:
    with session_scope(engine, readonly=True) as session:
        return {job_id: jobs.get_job(session, job_id=job_id).status for job_id in job_ids}


def _cancel_on_stop(engine: Engine, job_ids: list[int], stop: threading.Event) -> None:
    """Once ``stop`` is set, ask every job still open to cancel (QUEUED ones end at once; the
    supervisor stops RUNNING ones after a resume checkpoint)."""
    stop.wait()
    for job_id in job_ids:
        try:
            jobs.transact(engine, lambda session, j=job_id: jobs.request_cancel(session, job_id=j), patience=10)
        except Exception:  # noqa: BLE001 - the lease then expires and a worker resumes it: nothing is lost
            continue


def requeue(engine: Engine, run_id: int) -> int:
    """The job id that resumes run ``run_id``: its latest train job, retried when it ended CANCELLED or
    FAILED. Raises LookupError for a run without one, ValueError for a run that is not resumable."""
    with session_scope(engine) as session:
        job = jobs.latest_train_job(session, run_id=run_id)
        if job is None:
            raise LookupError(f"run {run_id} has no train job to resume")
        if job.status == Status.SUCCEEDED.value:
            raise ValueError(f"run {run_id} has already SUCCEEDED")
        if job.status in (Status.FAILED.value, Status.CANCELLED.value):
            jobs.retry(session, job_id=job.id)
        elif job.status == Status.RUNNING.value:
            raise ValueError(f"run {run_id} is RUNNING on {job.worker_id}; cancel it first")
        return job.id
