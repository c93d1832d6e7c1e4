"""The job life cycle: submit, claim, heartbeat, fence, finish, cancel, reap, retry.

A job row is the system of record for one unit of queued work (docs/architecture.md, "Data flow"
and "Two dispatchers"); the queue, when there is one, only ever carries its id. The life cycle::

    submit -> QUEUED --claim--> RUNNING --finish--> SUCCEEDED | FAILED | CANCELLED
                 ^                 |
                 +--reap/release---+   (lease expired or child crashed: re-queued, or FAILED
                                        once `attempt` reaches `max_attempts`)

Ownership. `claim` moves a QUEUED job to RUNNING and bumps `fencing_token`; the claimer owns the
job while the token it got is current and the job is RUNNING. Every later write by that worker
(heartbeat, progress, training records through `fence`, finish) first locks the job row and checks
both, in the same transaction as the write, so a worker that lost its lease (paused, partitioned,
presumed dead and replaced) can never write again: its token is stale once the job is re-queued or
re-claimed. On SQLite the engine begins every write with BEGIN IMMEDIATE, which serialises the check
and the write; on PostgreSQL the job row is locked with SELECT ... FOR UPDATE (SKIP LOCKED when
claiming, so concurrent claimers never wait for each other). Every decision (retry, cancel, reap,
claim) reads the status from the row as the lock returned it, never from a copy the session loaded
earlier, so of concurrent callers exactly one makes a transition. Locks are always taken job row
first, then run row, so writers cannot deadlock.

A train job's run follows its job: QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED together, and a
final status is written to both in one transaction (``finish``; the training child calls it inside
its last write). A finished run is never demoted: the reaper ends a lost job whose run is already
final with the run's status instead of re-queueing it. Other kinds never touch their run's status:
an intervene job reads a finished run (which stays SUCCEEDED whatever becomes of the job), and a
sweep job has no run of its own (``payload["sweep_id"]`` names the sweep it expands into train jobs).
Each job keeps a readable history of its attempts in ``payload["history"]`` (claimed, lost,
released, finished, cancelled, retried, each with a time and a reason), and its live figures
(step, total, steps/s, ETA, loss, accuracy) in ``progress``; ``payload["progress_at"]`` is when its
worker last reported any (or claimed it), so `seconds_without_progress` tells a hung job from a slow one.

Leases are wall-clock times written by the worker and compared by the reaper, so worker and
reaper clocks must roughly agree (NTP); the lease should be several heartbeats long.

Helpers take the Session first and keywords only; they flush, the caller's `session_scope` commits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from core.db.models import Checkpoint, CheckpointKind, Job, JobKind, Run, Status, utcnow
from core.db.session import session_scope
from core.names import QUEUE_CPU, queue_for_device

TERMINAL = frozenset({Status.SUCCEEDED.value, Status.FAILED.value, Status.CANCELLED.value})


class JobNotFound(LookupError):
    """No job has the given id."""


class LeaseLost(Exception):
    """This worker no longer owns the job: its fencing token is stale or the job is not RUNNING."""


@dataclass(frozen=True)
class Claim:
    """What a worker gets when it claims a job: the job's identity and its fencing token."""

    job_id: int
    token: int
    attempt: int
    kind: str
    run_id: int | None
    queue: str
    from_step: int = 0  # a train job resumes after this step (its newest resume checkpoint)
    worker_id: str = ""  # who claimed it (a pack's companions are claimed under the same id)


@dataclass(frozen=True)
class Reaped:
    """A job whose lease expired, and what became of it (QUEUED again, FAILED, or CANCELLED)."""

    job_id: int
    status: str
    reason: str


# ---------------------------------------------------------------- submit and read


def submit_train_job(session: Session, *, run_id: int, queue: str | None = None, max_attempts: int = 3,
                     pack_key: str | None = None, pack_size: int | None = None) -> Job:
    """Queue a train job for run ``run_id``; ``queue`` defaults to the one its spec's device needs.

    ``pack_key`` (``core.packing.pack_key`` of the run's spec) lets a worker train the job in one
    pack with other QUEUED train jobs of the same key (`claim_companions`); ``pack_size`` is the
    submitter's choice of members per pack (None: the worker's; 1: never packed).
    """
    run = session.get(Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    payload: dict[str, Any] = {"history": []}
    if pack_key is not None:
        payload["pack_key"] = pack_key
    if pack_size is not None:
        payload["pack_size"] = int(pack_size)
    job = Job(kind=JobKind.TRAIN.value, run_id=run_id, status=Status.QUEUED.value,
              queue=queue or queue_for_device((run.spec or {}).get("device")), max_attempts=max_attempts,
              payload=payload, progress={"step": run.step, "total": run.total_steps})
    session.add(job)
    run.status = Status.QUEUED.value
    session.flush()
    return job


def submit_intervention_job(session: Session, *, run_id: int, spec: dict[str, Any], queue: str | None = None,
                            max_attempts: int = 3, population: int | None = None) -> Job:
    """Queue an intervene job on run ``run_id`` (``payload["spec"]`` says what to do); the run's status stays.
    ``population``: the sweep whose every member got this intervention in one request
    (``core.causal.population``), kept as ``payload["population"]`` so its page finds the jobs."""
    run = session.get(Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    payload: dict[str, Any] = {"spec": dict(spec), "history": []}
    if population is not None:
        payload["population"] = int(population)
    job = Job(kind=JobKind.INTERVENE.value, run_id=run_id, status=Status.QUEUED.value,
              queue=queue or queue_for_device((run.spec or {}).get("device")), max_attempts=max_attempts,
              payload=payload, progress={})
    session.add(job)
    session.flush()
    return job


def submit_sweep_job(session: Session, *, sweep_id: int, max_attempts: int = 3, pack_size: int | None = None) -> Job:
    """Queue the job that expands sweep ``sweep_id`` into its train jobs (cheap: always the cpu queue);
    ``pack_size`` goes to every cell's train job."""
    payload: dict[str, Any] = {"sweep_id": int(sweep_id), "history": []}
    if pack_size is not None:
        payload["pack_size"] = int(pack_size)
    job = Job(kind=JobKind.SWEEP.value, run_id=None, status=Status.QUEUED.value, queue=QUEUE_CPU,
              max_attempts=max_attempts, payload=payload, progress={})
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, *, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, *, status: str | Sequence[str] | None = None, limit: int = 50) -> list[Job]:
    """Jobs newest first, optionally of the given status(es)."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        query = query.where(Job.status.in_([Status(s).value for s in statuses]))
    return list(session.scalars(query))


def latest_job_for_run(session: Session, *, run_id: int) -> Job | None:
    """The newest job of a run (the one the run's status follows)."""
    query = select(Job).where(Job.run_id == run_id).order_by(Job.id.desc()).limit(1)
    return session.scalars(query).first()


def latest_train_job(session: Session, *, run_id: int) -> Job | None:
    """The newest train job of a run (an idempotent re-submit answers with it, not an intervention's)."""
    query = (select(Job).where(Job.run_id == run_id, Job.kind == JobKind.TRAIN.value)
             .order_by(Job.id.desc()).limit(1))
    return session.scalars(query).first()


def intervention_jobs(session: Session, *, run_id: int, limit: int = 20) -> list[Job]:
    """A run's intervention jobs, newest first (the causal panel shows their status and progress)."""
    query = (select(Job).where(Job.run_id == run_id, Job.kind == JobKind.INTERVENE.value)
             .order_by(Job.id.desc()).limit(limit))
    return list(session.scalars(query))


def has_queued(session: Session, *, queues: Sequence[str]) -> bool:
    """Whether any job waits on ``queues`` (a cheap read, so idle pollers take no write lock)."""
    query = select(Job.id).where(Job.status == Status.QUEUED.value, Job.queue.in_(list(queues))).limit(1)
    return session.scalar(query) is not None


def has_expired(session: Session, *, now: datetime | None = None) -> bool:
    """Whether any RUNNING job's lease has expired (the cheap read before `reap`)."""
    query = select(Job.id).where(Job.status == Status.RUNNING.value, Job.lease_expires_at < (now or utcnow()))
    return session.scalar(query.limit(1)) is not None


# ---------------------------------------------------------------- claiming


def claim(session: Session, *, job_id: int, worker_id: str, lease_seconds: float,
          now: datetime | None = None) -> Claim | None:
    """Claim job ``job_id`` if it is QUEUED; None for any other state (a duplicate or stale delivery)."""
    query = select(Job).where(Job.id == job_id, Job.status == Status.QUEUED.value)
    job = session.scalars(_locked(query, skip_locked=True)).first()
    return None if job is None else _take(session, job, worker_id, lease_seconds, now or utcnow())


def claim_next(session: Session, *, queues: Sequence[str], worker_id: str, lease_seconds: float,
               now: datetime | None = None) -> Claim | None:
    """Claim the oldest QUEUED job on any of ``queues``, or return None when there is none."""
    query = (select(Job).where(Job.status == Status.QUEUED.value, Job.queue.in_(list(queues)))
             .order_by(Job.created_at, Job.id).limit(1))
    job = session.scalars(_locked(query, skip_locked=True)).first()
    return None if job is None else _take(session, job, worker_id, lease_seconds, now or utcnow())


PACK_SCAN_ROWS = 2000  # queued train jobs a pack's claim looks through for companions


def claim_companions(session: Session, *, lead: Claim, worker_id: str, lease_seconds: float, limit: int,
                     now: datetime | None = None) -> list[Claim]:
    """Claim up to ``limit`` more QUEUED train jobs that can share ``lead``'s pack, oldest first.

    A companion is a train job on the lead's queue whose ``payload["pack_key"]`` equals the lead's
    and whose submitter did not ask for ``pack_size`` 1. Each is claimed as `claim` claims a job
    (its own attempt, fencing token and lease), so every member of a pack is an ordinary job: it
    is cancelled, reaped, resumed and retried on its own. Rows another claimer holds are skipped.
    """
    lead_job = session.get(Job, lead.job_id)
    key = (lead_job.payload or {}).get("pack_key") if lead_job is not None else None
    if key is None or limit < 1:
        return []
    query = (select(Job.id, Job.payload).where(Job.status == Status.QUEUED.value, Job.kind == JobKind.TRAIN.value,
                                               Job.queue == lead.queue, Job.id != lead.job_id)
             .order_by(Job.created_at, Job.id).limit(PACK_SCAN_ROWS))
    ids = [job_id for job_id, payload in session.execute(query)
           if (payload or {}).get("pack_key") == key and (payload or {}).get("pack_size") != 1][:limit]
    if not ids:
        return []
    locked = select(Job).where(Job.id.in_(ids), Job.status == Status.QUEUED.value).order_by(Job.created_at, Job.id)
    now = now or utcnow()
    claims = [_take(session, job, worker_id, lease_seconds, now)
              for job in session.scalars(_locked(locked, skip_locked=True)).all()]
    for member in claims:
        _log(session.get(Job, member.job_id), now, "packed", lead_job=lead.job_id)
    _log(lead_job, now, "packed", members=[lead.job_id, *(c.job_id for c in claims)])
    session.flush()
    return claims


def _take(session: Session, job: Job, worker_id: str, lease_seconds: float, now: datetime) -> Claim:
    job.status = Status.RUNNING.value
    job.attempt += 1
    job.fencing_token += 1
    job.worker_id = worker_id
    job.heartbeat_at = now
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    job.started_at = job.started_at or now
    job.error = None
    from_step = 0
    run = _driven_run(session, job)
    if run is not None:
        from_step = _resume_step(session, run)
        run.status = Status.RUNNING.value
        run.error = None
        job.progress = {"step": from_step, "total": run.total_steps}
    _stamp_progress(job, now)
    _log(job, now, "claimed", worker=worker_id, from_step=from_step)
    session.flush()
    return Claim(job_id=job.id, token=job.fencing_token, attempt=job.attempt, kind=job.kind,
                 run_id=job.run_id, queue=job.queue, from_step=from_step, worker_id=worker_id)


def _resume_step(session: Session, run: Run) -> int:
    """The step a train job resumes from: its newest resume checkpoint (0 when it has none)."""
    query = select(func.max(Checkpoint.step)).where(
        Checkpoint.run_id == run.id, Checkpoint.kind == CheckpointKind.RESUME.value)
    return session.scalar(query) or 0


# ---------------------------------------------------------------- writes by the owner


def _owned(session: Session, job_id: int, token: int) -> Job | None:
    """The job, locked, if ``token`` still owns it (current token and RUNNING); else None."""
    query = select(Job).where(Job.id == job_id, Job.fencing_token == token, Job.status == Status.RUNNING.value)
    return session.scalars(_locked(query).execution_options(populate_existing=True)).first()


def fence(job_id: int, token: int) -> Callable[[Session], None]:
    """A guard for ``execute_training``: raises LeaseLost unless ``token`` still owns the job.

    Run first in a write transaction, it locks the job row, so the check holds until the
    transaction commits: the guarded write lands only if the worker owned the job throughout.
    """
    def guard(session: Session) -> None:
        if _owned(session, job_id, token) is None:
            raise LeaseLost(f"job {job_id}: fencing token {token} no longer owns the job")
    return guard


def heartbeat(session: Session, *, job_id: int, token: int, lease_seconds: float,
              now: datetime | None = None) -> bool:
    """Renew the lease; False when the token no longer owns the job (the lease was lost)."""
    job = _owned(session, job_id, token)
    if job is None:
        return False
    now = now or utcnow()
    job.heartbeat_at = now
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    session.flush()
    return True


def report_progress(session: Session, *, job_id: int, token: int, progress: dict[str, Any],
                    now: datetime | None = None) -> bool:
    """Replace the job's live figures (non-finite numbers become None); False when not owned."""
    job = _owned(session, job_id, token)
    if job is None:
        return False
    job.progress = {key: _finite(value) for key, value in progress.items()}
    _stamp_progress(job, now or utcnow())
    session.flush()
    return True


def seconds_without_progress(job: Job, *, now: datetime | None = None) -> float | None:
    """How long a RUNNING job's worker has reported no progress (since its claim, at first); None otherwise.

    What a run page shows as "no progress for N min", and what the supervisor compares with its
    ``stall_seconds`` to tell a hung training process from a slow one.
    """
    stamp = (job.payload or {}).get("progress_at")
    if job.status != Status.RUNNING.value or not stamp:
        return None
    return max(0.0, ((now or utcnow()) - datetime.fromisoformat(stamp)).total_seconds())


def finish(session: Session, *, job_id: int, token: int, status: str, error: str | None = None) -> bool:
    """End an owned job (and its run) as SUCCEEDED, FAILED or CANCELLED; False when not owned.

    Idempotent for its owner: True again when ``token`` already ended the job with ``status``
    (the training child writes the final status with its last records; its supervisor confirms it).
    """
    status = Status(status).value
    if status not in TERMINAL:
        raise ValueError(f"finish needs a final status, not {status}")
    job = _owned(session, job_id, token)
    if job is None:
        return ended_by(session, job_id=job_id, token=token) == status
    _end(session, job, status, error, utcnow())
    _log(job, utcnow(), "finished", status=status, reason=_first_line(error))
    session.flush()
    return True


def release(session: Session, *, job_id: int, token: int, reason: str, lost: bool) -> str | None:
    """Give an owned job back: re-queue it (or end it, see `reap`); None when not owned.

    ``lost=True``: the attempt failed for a reason outside the job (its process crashed or was
    killed) and counts towards ``max_attempts``. ``lost=False``: a graceful shutdown handed it
    back after checkpointing, which costs the job no attempt.
    """
    job = _owned(session, job_id, token)
    if job is None:
        return None
    if lost:
        return _lose(session, job, reason, utcnow())
    _log(job, utcnow(), "released", reason=reason)
    job.attempt -= 1
    _requeue(session, job)
    session.flush()
    return job.status


def defer(session: Session, *, job_id: int, token: int, reason: str) -> str | None:
    """Give an owned job back to the end of the queue because it cannot start yet (its ``init_from``
    parent has not reached the step): QUEUED, no attempt used, ``created_at`` set to now so the
    jobs queued meanwhile are claimed first. None when not owned."""
    job = _owned(session, job_id, token)
    if job is None:
        return None
    now = utcnow()
    _log(job, now, "deferred", reason=reason)
    job.attempt -= 1
    job.created_at = now
    _requeue(session, job)
    session.flush()
    return job.status


def ended_by(session: Session, *, job_id: int, token: int) -> str | None:
    """The final status ``token`` ended the job with; None when it is not final or another token owns it."""
    job = session.scalars(select(Job).where(Job.id == job_id).execution_options(populate_existing=True)).first()
    if job is None or job.fencing_token != token or job.status not in TERMINAL:
        return None
    return job.status


# ---------------------------------------------------------------- cancel, reap, retry


def request_cancel(session: Session, *, job_id: int) -> str:
    """Cancel a job: a QUEUED one at once, a RUNNING one by flagging it for its worker.

    Returns the job's status afterwards (CANCELLED, still RUNNING, or an already final status).
    Of concurrent cancels exactly one makes the change; the others find it made.
    """
    job = session.scalars(_locked(select(Job).where(Job.id == job_id))).first()
    if job is None:
        raise JobNotFound(job_id)
    if job.status == Status.QUEUED.value:
        _end(session, job, Status.CANCELLED.value, None, utcnow())
        _log(job, utcnow(), "cancelled", reason="cancelled before it started")
    elif job.status == Status.RUNNING.value and not job.cancel_requested:
        job.cancel_requested = True
        _log(job, utcnow(), "cancel requested")
    session.flush()
    return job.status


def reap(session: Session, *, now: datetime | None = None) -> list[Reaped]:
    """Deal with RUNNING jobs whose lease has expired: their worker is presumed lost.

    Each is re-queued (it resumes from its last checkpoint), or FAILED with the reason once it has
    used ``max_attempts``, or CANCELLED if a cancel was pending; a train job whose run already
    reached a final status ends with that status (the run is never demoted).
    """
    now = now or utcnow()
    query = select(Job).where(Job.status == Status.RUNNING.value, Job.lease_expires_at < now).order_by(Job.id)
    reaped = []
    for job in session.scalars(_locked(query, skip_locked=True)).all():
        silent = (now - (job.heartbeat_at or job.lease_expires_at)).total_seconds()
        reason = f"worker lost: no heartbeat for {silent:.0f} s"
        reaped.append(Reaped(job.id, _lose(session, job, reason, now), reason))
    return reaped


def retry(session: Session, *, job_id: int) -> Job:
    """Re-queue a FAILED or CANCELLED job with a fresh allowance of attempts.

    Raises ValueError for a job in any other state: of concurrent retries exactly one re-queues
    the job, as each reads the status from the row it has locked.
    """
    job = session.scalars(_locked(select(Job).where(Job.id == job_id))).first()
    if job is None:
        raise JobNotFound(job_id)
    if job.status not in (Status.FAILED.value, Status.CANCELLED.value):
        raise ValueError(f"job {job_id} is {job.status}; only FAILED or CANCELLED jobs can be retried")
    job.attempt = 0
    job.finished_at = None
    _requeue(session, job)
    _log(job, utcnow(), "retried")
    session.flush()
    return job


def due_for_publishing(session: Session, *, older_than: float, queues: Sequence[str] | None = None,
                       now: datetime | None = None, limit: int = 100) -> list[tuple[int, str]]:
    """(job id, queue) of QUEUED jobs untouched for ``older_than`` seconds, stamped as published now.

    A broker may lose a message (a Redis restart without persistence, a purge): such a job would
    wait forever. Whoever calls this re-publishes the ids it returns; ``queues`` limits it to the
    queues whose broker list is empty (a busy queue still holds its messages). The stamp (``updated_at``,
    bumped by writing ``payload["published_at"]``) makes concurrent callers pick each job once per
    period; a job published twice is harmless, as only one delivery can claim it.
    """
    now = now or utcnow()
    query = (select(Job).where(Job.status == Status.QUEUED.value,
                               Job.updated_at < now - timedelta(seconds=older_than))
             .order_by(Job.id).limit(limit))
    if queues is not None:
        query = query.where(Job.queue.in_(list(queues)))
    due = []
    for job in session.scalars(_locked(query, skip_locked=True)).all():
        job.payload = {**(job.payload or {}), "published_at": now.isoformat(timespec="seconds")}
        job.updated_at = now
        due.append((job.id, job.queue))
    session.flush()
    return due


# ---------------------------------------------------------------- transactions that outlive a dropped connection

DISCONNECT_RETRIES = 4


def transact(engine: Engine, fn: Callable[[Session], Any], *, retries: int = DISCONNECT_RETRIES,
             backoff: float = 0.2, patience: float = 0.0) -> Any:
    """``fn(session)`` in one transaction, retried when the database connection was lost under it.

    PostgreSQL may terminate a connection at any moment (a restart, a failover, an administrator's
    ``pg_terminate_backend``): the transaction in flight fails with a disconnect and rolls back.
    The pool drops that connection (and pre-ping screens the others), so a retry gets a fresh one.
    ``patience`` (seconds) also retries any transient failure (`is_transient`: a SQLite file locked
    past its busy timeout, a server that is away) until that long has passed: for the writes that
    must land, such as a supervisor handing back its job. Only safe for idempotent writes: every
    write of a job is an upsert checked by its fencing token, so a retry of a transaction whose
    COMMIT did land changes nothing. Other errors raise.
    """
    give_up_at = time.monotonic() + patience
    attempt = 0
    while True:
        try:
            with session_scope(engine) as session:
                return fn(session)
        except DBAPIError as exc:
            attempt += 1
            reconnect = exc.connection_invalidated and attempt <= retries
            wait = is_transient(exc) and time.monotonic() < give_up_at
            if not (reconnect or wait):
                raise
            time.sleep(min(backoff * attempt, 1.0))


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is the database failing rather than the statement: locked past the busy
    timeout, unreachable, or the connection lost. Such an error is never a job's own fault."""
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def describe(exc: BaseException) -> str:
    """An error in one line: SQLAlchemy's first line (``(sqlite3.OperationalError) database is locked``),
    without the SQL and the "Background on this error at ..." lines that follow it."""
    return _first_line(str(exc)) or type(exc).__name__


# ---------------------------------------------------------------- internals


def _lose(session: Session, job: Job, reason: str, now: datetime) -> str:
    """An attempt ended by something outside the job: re-queue, or end it after the last attempt."""
    run = _driven_run(session, job)
    at_step = {"at_step": run.step} if run is not None else {}
    if run is not None and run.status in TERMINAL:  # it finished before its worker could say so
        _close(job, run.status, run.error, now)  # the job follows its run; the run stays as it ended
    elif job.cancel_requested:
        _end(session, job, Status.CANCELLED.value, None, now)
    elif job.attempt >= job.max_attempts:
        _end(session, job, Status.FAILED.value, f"{reason} (gave up after {job.attempt} attempts)", now)
    else:
        _requeue(session, job)
    _log(job, now, "lost", reason=reason, became=job.status, **at_step)
    session.flush()
    return job.status


def _requeue(session: Session, job: Job) -> None:
    job.status = Status.QUEUED.value
    job.worker_id = job.lease_expires_at = job.heartbeat_at = None
    job.cancel_requested = False
    job.error = None
    run = _driven_run(session, job)
    if run is not None:
        run.status, run.error, run.finished_at = Status.QUEUED.value, None, None


def _end(session: Session, job: Job, status: str, error: str | None, now: datetime) -> None:
    _close(job, status, error, now)
    run = _driven_run(session, job)
    if run is not None:
        run.status, run.finished_at = status, now
        if error is not None:
            run.error = error


def _close(job: Job, status: str, error: str | None, now: datetime) -> None:
    job.status = status
    job.error = error
    job.finished_at = now
    job.lease_expires_at = None


def _driven_run(session: Session, job: Job) -> Run | None:
    """The run whose status follows this job: a train job's run; None for every other kind."""
    if job.kind != JobKind.TRAIN.value or job.run_id is None:
        return None
    return session.get(Run, job.run_id)


def _stamp_progress(job: Job, now: datetime) -> None:
    job.payload = {**(job.payload or {}), "progress_at": now.isoformat()}


def _log(job: Job, now: datetime, event: str, **details: Any) -> None:
    """Append an event to the job's history (a new dict, so the JSON column sees the change)."""
    entry = {"at": now.isoformat(timespec="seconds"), "attempt": job.attempt, "event": event}
    entry.update({key: value for key, value in details.items() if value is not None})
    payload = dict(job.payload or {})
    payload["history"] = [*payload.get("history", []), entry]
    job.payload = payload


def _locked(query, *, skip_locked: bool = False):
    """FOR UPDATE on PostgreSQL; SQLite renders nothing (BEGIN IMMEDIATE already holds the lock).

    The rows come back as the lock found them (``populate_existing``): a job the session had
    loaded before the lock, as a route does to find it, would otherwise keep its old status.
    """
    return query.with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0][:300] if text and text.strip() else None
