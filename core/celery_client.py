"""The Celery side of dispatch: one small app object per broker, and ``publish`` (job ids only).

    publish(settings, [job_id, ...])      # core.submit.dispatch calls this when a broker URL is set

Each id goes out as the one task, ``core.names.EXECUTE_JOB_TASK`` (``circuitboard.execute_job``),
sent by name (the sender never imports the worker's code) to the queue its job row names: ``cpu``
or ``gpu``. The message is JSON holding nothing but the id; the jobs table stays the system of
record, so a lost message costs a delay (workers re-publish QUEUED jobs left unclaimed for
``republish_after_seconds``) and a duplicate costs nothing (only one delivery can claim a job).

``make_app`` holds the settings both ends share (``worker.celery_app`` builds the worker from it):

- JSON only (``task_serializer``, ``accept_content``): a message can never carry code or objects;
- ``task_acks_late`` and ``worker_prefetch_multiplier = 1``: a worker takes one message at a time
  and acknowledges it when the job is over, so a worker lost mid-job leaves it in the broker;
- ``task_reject_on_worker_lost``: a worker process killed mid-task puts the message back;
- ``broker_transport_options.visibility_timeout`` = ``settings.visibility_timeout_seconds`` (7 days
  by default): Redis redelivers an unacknowledged message only after that, so it must exceed the
  longest job; the reaper, not the broker, notices dead workers within a lease;
- no result backend: results live in the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from celery import Celery
from sqlalchemy import select

from core.names import EXECUTE_JOB_TASK, QUEUE_CPU
from core.settings import Settings

PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def make_app(settings: Settings, *, main: str = "circuitboard") -> Celery:
    """A Celery app for ``settings.broker_url`` with the delivery guarantees above."""
    if not settings.broker_url:
        raise ValueError("Celery needs a broker URL (CIRCUITBOARD_BROKER_URL or --broker)")
    app = Celery(main, broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker restart, however long
        task_default_queue=QUEUE_CPU,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # the job's lease, not the broker, decides
        enable_utc=True,
    )
    return app


@lru_cache(maxsize=4)
def _client(broker_url: str, visibility_timeout: int) -> Celery:
    return make_app(Settings(broker_url=broker_url, visibility_timeout_seconds=visibility_timeout))


@lru_cache(maxsize=4)
def _engine(database_url: str):
    from core.db.session import make_engine

    return make_engine(database_url)


def publish(settings: Settings, job_ids: Sequence[int], *, queues: Mapping[int, str] | None = None) -> None:
    """Send ``execute_job(id)`` for each id to its job's queue (read from the jobs table unless given).

    Raises when the broker stays unreachable after a few quick retries; callers that committed the
    job already may ignore that, as the republisher sends it later.
    """
    if not job_ids:
        return
    queues = dict(queues) if queues is not None else _queues(settings, job_ids)
    app = _client(settings.broker_url, settings.visibility_timeout_seconds)
    for job_id in job_ids:
        queue = queues.get(int(job_id))
        if queue is None:
            continue  # no such job: nothing to execute
        app.send_task(EXECUTE_JOB_TASK, args=[int(job_id)], queue=queue, routing_key=queue,
                      retry=True, retry_policy=PUBLISH_RETRY_POLICY)


def _queues(settings: Settings, job_ids: Sequence[int]) -> dict[int, str]:
    from core.db.models import Job
    from core.db.session import session_scope

    with session_scope(_engine(settings.database_url), readonly=True) as session:
        rows = session.execute(select(Job.id, Job.queue).where(Job.id.in_([int(i) for i in job_ids])))
        return {job_id: queue for job_id, queue in rows}


def queue_depths(settings: Settings, queues: Sequence[str]) -> dict[str, int]:
    """How many messages wait in each broker queue (0 for a queue the broker does not know)."""
    app = _client(settings.broker_url, settings.visibility_timeout_seconds)
    depths = {}
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in queues:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except Exception:  # noqa: BLE001 - kombu's NOT_FOUND: an empty Redis list does not exist
                depths[queue] = 0
    return depths
