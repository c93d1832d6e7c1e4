"""The Celery worker: one thin task over the one execution path, plus the worker's upkeep thread.

    circuitboard worker --broker redis://host:6379/0 --queue gpu --device cuda:0
    celery -A worker.celery_app worker -Q cpu --pool solo --concurrency 1     (the same, by hand)

Settings come from the environment (``CIRCUITBOARD_BROKER_URL``, ``CIRCUITBOARD_DATABASE_URL``,
...), read when this module is imported; ``circuitboard worker`` sets them from its flags first.

The task, ``circuitboard.execute_job(job_id)``, calls ``worker.execute.execute_job``: claim (a
duplicate or stale delivery claims nothing and is dropped), supervise the child, finish. Run one
worker process per device with the solo pool (``circuitboard worker`` does): one job at a time,
in the worker's main thread, so a SIGTERM reaches it. SIGTERM is a warm shutdown: the running
job's child checkpoints, the job goes back to QUEUED (no attempt used) and is published again
for another worker, and the worker exits.

Upkeep. Once the worker is ready, a daemon thread (:class:`Upkeep`) does what the local worker's
loop does between jobs, for every queue:

- every second, reaps RUNNING jobs whose lease expired (their worker died) and publishes the ones
  that went back to QUEUED;
- every ``republish_after_seconds / 3``, re-publishes QUEUED jobs left unclaimed for
  ``republish_after_seconds`` whose broker queue is empty: their message was lost (a Redis restart,
  a purge, a crash between commit and publish). A queue that still holds messages is only busy, so
  its jobs are left alone, and a long wait behind a long job piles up no duplicates. A job
  published twice is harmless anyway: only one delivery can claim it.

Several workers may run upkeep at once: reaping and the republish stamp lock their rows, so each
job is handled once per period.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import lru_cache

from celery import signals
from celery.worker import state as worker_state
from sqlalchemy.engine import Engine

from core.celery_client import make_app, publish, queue_depths
from core.db import jobs
from core.db.models import Status
from core.db.session import make_engine, session_scope
from core.names import EXECUTE_JOB_TASK, QUEUES
from core.settings import get_settings
from worker.execute import DROPPED, execute_job

log = logging.getLogger("worker.celery")

settings = get_settings()
app = make_app(settings)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:celery"
REAP_EVERY_SECONDS = 1.0
_shutting_down = threading.Event()


@lru_cache(maxsize=1)
def engine() -> Engine:
    return make_engine(settings.database_url)


def _stopping() -> bool:
    """True once the worker is shutting down (SIGTERM, SIGINT): the running job is handed back."""
    return _shutting_down.is_set() or bool(worker_state.should_stop) or bool(worker_state.should_terminate)


@app.task(name=EXECUTE_JOB_TASK, ignore_result=True)
def execute_job_task(job_id) -> str:
    """Execute job ``job_id`` (the message's only argument) through the one execution path."""
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        log.warning("dropped a message whose job id is not an integer: %r", job_id)
        return DROPPED
    status = execute_job(job_id, engine=engine(), worker_id=WORKER_ID, settings=settings, should_stop=_stopping)
    if status == Status.QUEUED.value:  # handed back (shutdown, or a lost attempt to retry): send it again
        _publish([job_id])
    return status


def _publish(job_ids: list[int]) -> None:
    try:
        publish(settings, job_ids)
    except Exception as exc:  # noqa: BLE001 - the broker is away; the republisher tries again later
        log.warning("could not publish jobs %s yet: %s", job_ids, exc)


class Upkeep(threading.Thread):
    """Reaps expired leases and re-publishes QUEUED jobs whose message was lost, until stopped."""

    def __init__(self) -> None:
        super().__init__(name="circuitboard-upkeep", daemon=True)
        self.stop = threading.Event()
        self.republish_every = max(0.5, settings.republish_after_seconds / 3)

    def run(self) -> None:
        next_republish = 0.0
        while not self.stop.wait(REAP_EVERY_SECONDS):
            try:
                self.reap()
                if self.stop.is_set():
                    break
                if (now := time.monotonic()) >= next_republish:
                    self.republish()
                    next_republish = now + self.republish_every
            except Exception as exc:  # noqa: BLE001 - the database or broker is away: try again next time
                log.warning("upkeep: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def reap(self) -> None:
        with session_scope(engine(), readonly=True) as session:
            if not jobs.has_expired(session):
                return
        with session_scope(engine()) as session:
            reaped = jobs.reap(session)
        for item in reaped:
            log.warning("job %s: %s -> %s", item.job_id, item.reason, item.status)
        _publish([item.job_id for item in reaped if item.status == Status.QUEUED.value])

    def republish(self) -> None:
        # A queue that still holds messages is busy, not lost: its jobs wait their turn. Only the
        # QUEUED jobs of drained queues can have lost their message, so only those are sent again
        # (at most one duplicate per job each time a queue drains).
        empty = [queue for queue, depth in queue_depths(settings, QUEUES).items() if depth == 0]
        if not empty:
            return
        with session_scope(engine()) as session:
            due = jobs.due_for_publishing(session, older_than=settings.republish_after_seconds, queues=empty)
        if due:
            log.info("re-publishing %d job(s) left unclaimed for %s s: %s", len(due),
                     settings.republish_after_seconds, [job_id for job_id, _ in due])
            try:
                publish(settings, [job_id for job_id, _ in due], queues=dict(due))
            except Exception as exc:  # noqa: BLE001
                log.warning("could not re-publish yet: %s", exc)


_upkeep: Upkeep | None = None


@signals.worker_ready.connect
def _start_upkeep(**_) -> None:
    global _upkeep
    _upkeep = Upkeep()
    _upkeep.start()
    log.info("worker %s ready; upkeep every %.0f s (reap) and %.0f s (republish)", WORKER_ID,
             REAP_EVERY_SECONDS, _upkeep.republish_every)


@signals.worker_shutting_down.connect
def _on_shutting_down(**_) -> None:
    _shutting_down.set()  # the running job (if any) checkpoints and is handed back


@signals.worker_shutdown.connect
def _stop_upkeep(**_) -> None:
    if _upkeep is not None:
        _upkeep.stop.set()
        _upkeep.join(timeout=5)
