"""The one execution path of every job: claim -> supervise a child process -> heartbeat -> finish.

Both dispatchers call it: the embedded local worker (``worker.local``) hands it the jobs it claims
from the database, and a Celery task calls ``execute_job(job_id)`` for each message. A duplicate or
stale delivery claims nothing and is dropped (``DROPPED``).

The caller's process is the supervisor; the work runs in a child (``python -m worker.child``) in a
new process group, so that a terminal's Ctrl-C reaches only the supervisor, which decides, and the
whole group can be killed at once. While the child runs, the supervisor:

- renews the lease every ``heartbeat_seconds``; when a renewal finds the token no longer owns the job
  (the reaper gave it to someone else while this process was paused or cut off), or the database has
  been unreachable for a whole lease, it kills the child and writes nothing more (``LOST``);
- checks for a cancel request about once a second: SIGTERM to the child's group, SIGKILL after
  ``stop_grace_seconds``, then CANCELLED;
- at the same time, how long the job has reported no progress: a child silent for ``stall_seconds``
  (hung, or stopped by a signal) is killed and the attempt counts as lost, so it resumes from its
  last checkpoint like any other lost attempt;
- on a graceful worker shutdown (``should_stop()`` turns true) sends SIGTERM the same way: the child
  writes a resume checkpoint and the job goes back to the queue without using up an attempt.

How the child ended decides the job (see ``worker.child`` for the exit codes): success -> SUCCEEDED;
the job's own error (an exception, NaN loss) -> FAILED with the error, never retried automatically;
killed by a signal or a database failure -> the attempt is lost: re-queued to resume from its last
checkpoint, or FAILED once it has used ``max_attempts``. A train job's child ends the job itself,
in the transaction that writes its run's final status; the supervisor's own ``finish`` then only
confirms it (and a supervisor that dies between the two leaves nothing to re-do). The supervisor's
last write (finish, or handing the attempt back) waits out a database that is briefly locked or away
(``FINAL_WRITE_PATIENCE_LEASES`` leases), fenced like every other write.

Job kinds. ``train`` and ``intervene`` jobs run in the child (``worker.child`` picks the work by the
job's kind). A ``sweep`` job is bookkeeping, not computation: the supervisor expands it inline, in
one fenced transaction (``core.sweeps.expand_sweep``: a QUEUED run and train job per grid cell,
idempotent by submit key), then dispatches the cells' jobs and ends SUCCEEDED.

A run whose spec does not validate ends FAILED("invalid spec: ...") here, before any child starts,
so no tensor is ever allocated for it. This module never imports torch.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.db import crud, jobs
from core.db.models import Status
from core.db.session import session_scope
from core.names import JOB_INTERVENE, JOB_SWEEP, JOB_TRAIN
from core.packing import choose_pack_size
from core.settings import Settings
from core.specs.errors import SpecError
from core.specs.run import RunSpec
from core.submit import LIVE, KeyReused, dispatch
from core.summary import summarize
from worker import child

log = logging.getLogger(__name__)

DROPPED = "DROPPED"  # a duplicate or stale delivery: nothing was claimed
DEFERRED = "DEFERRED"  # back in the queue: its init_from parent has not reached the step yet
LOST = "LOST"  # the lease was lost mid-run: another worker owns the job now
POLL_SECONDS = 0.2  # how often the supervisor wakes up
CANCEL_CHECK_SECONDS = 1.0  # how often it looks for a cancel request (and for a stall)
FINAL_WRITE_PATIENCE_LEASES = 3  # how long (in leases) the last write waits for a locked or absent database
REPO_ROOT = Path(__file__).resolve().parents[1]

ShouldStop = Callable[[], bool]


def execute_job(job_id: int, *, engine: Engine, worker_id: str, settings: Settings,
                should_stop: ShouldStop | None = None) -> str:
    """Claim job ``job_id`` and run it to its end; return the job's status afterwards.

    Returns SUCCEEDED, FAILED, CANCELLED, QUEUED (handed back to the queue), LOST, DROPPED or DEFERRED
    (back at the end of the queue: its init_from parent has not reached the step; see core/seed_sets.py).
    """
    with session_scope(engine) as session:
        claimed = jobs.claim(session, job_id=job_id, worker_id=worker_id, lease_seconds=settings.lease_seconds)
    if claimed is None:
        log.info("job %s: not QUEUED, delivery dropped", job_id)
        return DROPPED
    return run_claimed(claimed, engine=engine, settings=settings, should_stop=should_stop)


def run_claimed(claim: jobs.Claim, *, engine: Engine, settings: Settings,
                should_stop: ShouldStop | None = None) -> str:
    """Run a job this process has just claimed (the local dispatcher claims with ``claim_next``)."""
    log.info("job %s: %s, attempt %s, token %s, run %s from step %s",
             claim.job_id, claim.kind, claim.attempt, claim.token, claim.run_id, claim.from_step)
    if claim.kind == JOB_SWEEP:
        return _expand_sweep(engine, claim, settings)
    refusal, spec, payload = _check(engine, claim)
    if refusal is not None:
        return _finish(engine, claim, Status.FAILED, refusal)
    if claim.kind == JOB_TRAIN and claim.from_step >= spec.train.steps:  # trained to the end, never recorded so
        return _complete(engine, claim)
    if claim.kind != JOB_TRAIN:
        return _supervise(engine, [claim], settings, should_stop or (lambda: False))[0]
    return run_claims([claim, *_companions(engine, claim, spec, payload, settings)], engine=engine, settings=settings,
                      should_stop=should_stop)[0]


def run_claims(claims: list[jobs.Claim], *, engine: Engine, settings: Settings,
               should_stop: ShouldStop | None = None) -> list[str]:
    """Run train jobs this process has claimed as one pack (one child); return each one's status.

    Each is checked first as a lone job is: an invalid spec ends FAILED, a run already trained to
    its end is only recorded; the rest train together. ``run_claimed`` calls it with a job and its
    companions, and ``circuitboard train`` with the members of its seed set.
    """
    statuses: dict[int, str] = {}
    live = []
    for claim in claims:
        refusal, spec, _ = _check(engine, claim)
        waiting = _waiting_for_parent(engine, claim, spec) if refusal is None else None
        if refusal is not None:
            statuses[claim.job_id] = _finish(engine, claim, Status.FAILED, refusal)
        elif claim.from_step >= spec.train.steps:
            statuses[claim.job_id] = _complete(engine, claim)
        elif waiting is not None:
            done = jobs.transact(engine, lambda s, c=claim: jobs.defer(s, job_id=c.job_id, token=c.token, reason=waiting))
            log.info("job %s: deferred (%s)", claim.job_id, waiting)
            statuses[claim.job_id] = DEFERRED if done else LOST
        else:
            live.append(claim)
    if live:
        ended = _supervise(engine, live, settings, should_stop or (lambda: False))
        statuses.update(zip((claim.job_id for claim in live), ended))
    return [statuses[claim.job_id] for claim in claims]


def _check(engine: Engine, claim: jobs.Claim) -> tuple[str | None, RunSpec | None, dict]:
    """(why the job cannot run, or None; the run's spec; the job's payload), read before anything starts."""
    if claim.kind not in (JOB_TRAIN, JOB_INTERVENE):
        return f"unsupported job kind {claim.kind!r}", None, {}
    with session_scope(engine, readonly=True) as session:
        run = crud.get_run(session, run_id=claim.run_id) if claim.run_id is not None else None
        if run is None:
            return f"run {claim.run_id} does not exist", None, {}
        flat = dict(run.spec or {})
        payload = dict(jobs.get_job(session, job_id=claim.job_id).payload or {})
    try:
        spec = RunSpec.from_flat(flat)
    except SpecError as exc:
        return f"invalid spec: {exc}", None, payload
    if claim.kind == JOB_INTERVENE and not isinstance(payload.get("spec"), dict):
        return "invalid intervention: the job carries no spec", None, payload
    return None, spec, payload


def _waiting_for_parent(engine: Engine, claim: jobs.Claim, spec: RunSpec) -> str | None:
    """Why a train job cannot start yet: its ``init_from`` parent is still queued or training and
    has not recorded weights at the step (None when it can start, or when the parent ended without
    them: training then fails with the missing checkpoint named)."""
    if claim.from_step > 0 or not spec.train.init_source:
        return None
    parent_id, step = spec.train.init_source
    with session_scope(engine, readonly=True) as session:
        parent = crud.get_run(session, run_id=parent_id)
        if parent is None or parent.status not in LIVE or step in crud.checkpoint_steps(session, run_id=parent_id):
            return None
        return f"waiting for run {parent_id} to reach step {step} (now at {parent.step})"


def _companions(engine: Engine, lead: jobs.Claim, spec: RunSpec, payload: dict,
                settings: Settings) -> list[jobs.Claim]:
    """Claim the queued train jobs that train in one pack with ``lead`` (none when its pack size is 1).

    The pack size is the lead's submitted ``pack_size`` (in its ``payload``, as ``_check`` read it),
    else the worker's setting, else the cost model of ``core.packing.choose_pack_size``.
    """
    requested = payload.get("pack_size")
    device = spec.train.device or os.environ.get(child.WORKER_DEVICE_ENV) or "cpu"
    sized = spec.model_copy(update={"train": spec.train.model_copy(update={"device": device})})
    size = choose_pack_size(sized, requested=requested, setting=settings.pack_size)
    if size <= 1:
        return []
    with session_scope(engine) as session:
        members = jobs.claim_companions(session, lead=lead, worker_id=lead.worker_id,
                                        lease_seconds=settings.lease_seconds, limit=size - 1)
    if members:
        log.info("job %s: packed with jobs %s", lead.job_id, ", ".join(str(m.job_id) for m in members))
    return members


def _expand_sweep(engine: Engine, claim: jobs.Claim, settings: Settings) -> str:
    """Expand a sweep into its cells' runs and train jobs (fenced, idempotent), then dispatch them."""
    from core.sweeps import SweepError, expand_sweep

    def expand(session) -> tuple[list[int], bool]:
        jobs.fence(claim.job_id, claim.token)(session)
        job = jobs.get_job(session, job_id=claim.job_id)
        payload = job.payload or {}
        expanded = expand_sweep(session, sweep_id=payload.get("sweep_id"), pack_size=payload.get("pack_size"))
        return expanded, job.cancel_requested  # a sweep cancelled as its job ran expanded nothing

    try:
        job_ids, cancelled = jobs.transact(engine, expand)
    except jobs.LeaseLost:
        return LOST
    except (SweepError, SpecError, KeyReused) as exc:
        return _finish(engine, claim, Status.FAILED, f"invalid sweep: {exc}")
    if cancelled:
        return _finish(engine, claim, Status.CANCELLED)
    try:
        dispatch(settings, job_ids)
    except Exception as exc:  # noqa: BLE001 - a broker outage: the republisher sends them later
        log.warning("job %s: could not dispatch the sweep's %d jobs yet: %s", claim.job_id, len(job_ids), exc)
    return _finish(engine, claim, Status.SUCCEEDED)


def _supervise(engine: Engine, claims: list[jobs.Claim], settings: Settings, should_stop: ShouldStop) -> list[str]:
    """Start the child for ``claims`` (one job, or the members of a pack), keep their leases while it
    runs, and turn its ending into each job's status (in the order of ``claims``).

    A pack's child ends each member itself as the member ends (succeeded, failed alone, cancelled
    alone); what is left when it exits is decided here from how it exited, member by member.
    """
    ids = [str(part) for claim in claims for part in (claim.job_id, claim.token)]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "worker.child", *ids],
                                env=_child_env(engine), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, process_group=0)
        try:
            code, intent = _watch(engine, claims, settings, should_stop, proc)
        finally:
            _kill_group(proc, signal.SIGKILL)  # whatever happened, nothing of it is left behind
            proc.wait()
        stderr.seek(0)
        tail = stderr.read()[-2000:].decode(errors="replace").strip()
    if code is None:  # a lease was lost: write nothing more for it; hand back the members still ours
        return [_ended(engine, claim) or (LOST if len(claims) == 1 else
                                          _release(engine, claim, "its pack lost a member's lease", lost=True))
                for claim in claims]
    return [_ended(engine, claim) or _outcome(engine, claim, settings, code, intent, tail) for claim in claims]


def _watch(engine: Engine, claims: list[jobs.Claim], settings: Settings, should_stop: ShouldStop,
           proc: subprocess.Popen) -> tuple[int | None, str | None]:
    """Supervise until the child exits: (its exit code, or None when a lease was lost; why we stopped it)."""
    intent: str | None = None  # "cancel", "release" or "stall" once we have asked the child to stop
    kill_at: float | None = None
    renewed = time.monotonic()
    next_beat = renewed + settings.heartbeat_seconds
    next_cancel_check = renewed + CANCEL_CHECK_SECONDS
    first = claims[0].job_id
    while True:
        try:
            return proc.wait(timeout=POLL_SECONDS), intent
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now >= next_beat:
            owned = _heartbeat(engine, claims, settings)
            if owned is False or (owned is None and now - renewed >= settings.lease_seconds):
                log.warning("job %s: lease lost; stopping its process, writing nothing more", first)
                return None, intent
            renewed = now if owned else renewed
            next_beat = now + settings.heartbeat_seconds
        if intent is None and should_stop():
            intent = "release"
        if intent is None and now >= next_cancel_check:
            cancel, silent = _look(engine, claims)
            if cancel:
                intent = "cancel"
            elif settings.stall_seconds and silent is not None and silent >= settings.stall_seconds:
                log.warning("job %s: no progress for %.0f s; killing its process", first, silent)
                intent, kill_at = "stall", now  # a hung or stopped process would not checkpoint: SIGKILL now
            next_cancel_check = now + CANCEL_CHECK_SECONDS
        if intent is not None and kill_at is None:
            log.info("job %s: stopping its process (%s)", first, intent)
            _kill_group(proc, signal.SIGTERM)
            kill_at = now + settings.stop_grace_seconds
        if kill_at is not None and now >= kill_at:
            _kill_group(proc, signal.SIGKILL)


def _outcome(engine: Engine, claim: jobs.Claim, settings: Settings, code: int, intent: str | None,
             stderr_tail: str) -> str:
    """The job's status after its child exited with ``code`` (written with patience: see the module docstring)."""
    wait = settings.lease_seconds * FINAL_WRITE_PATIENCE_LEASES

    def release(reason: str, *, lost: bool = True) -> str:
        return _release(engine, claim, reason, lost=lost, patience=wait)

    if code == child.EXIT_SUCCEEDED:
        return _finish(engine, claim, Status.SUCCEEDED, patience=wait)
    if code == child.EXIT_LEASE_LOST:
        return LOST
    if code == child.EXIT_FAILED:
        error = _run_error(engine, claim) if claim.kind == JOB_TRAIN else None
        return _finish(engine, claim, Status.FAILED, error or stderr_tail or "failed", patience=wait)
    if intent == "cancel":
        return _finish(engine, claim, Status.CANCELLED, patience=wait)
    if intent == "stall":
        return release(f"no progress for {settings.stall_seconds} s: training process killed (hung or stopped)")
    if intent == "release":
        return release("worker shut down; released after a checkpoint", lost=False)
    if code == child.EXIT_INFRA:
        return release(f"database failure: {_last_line(stderr_tail)}")
    if code == child.EXIT_STOPPED:
        return release("training process was stopped from outside its worker")
    if code < 0:
        return release(f"training process killed by {signal.Signals(-code).name}")
    return _finish(engine, claim, Status.FAILED, f"training process exited with status {code}: {stderr_tail}",
                   patience=wait)


# ---------------------------------------------------------------- database writes, all fenced


def _heartbeat(engine: Engine, claims: list[jobs.Claim], settings: Settings) -> bool | None:
    """Renew every member's lease in one transaction: True, False when one was lost (neither ours
    nor ended by us), None when the database could not be reached."""
    def beat(session) -> bool:
        return all(jobs.heartbeat(session, job_id=c.job_id, token=c.token, lease_seconds=settings.lease_seconds)
                   or jobs.ended_by(session, job_id=c.job_id, token=c.token) is not None for c in claims)

    try:
        with session_scope(engine) as session:
            return beat(session)
    except SQLAlchemyError as exc:
        log.warning("job %s: heartbeat failed: %s", claims[0].job_id, jobs.describe(exc))
        return None


def _look(engine: Engine, claims: list[jobs.Claim]) -> tuple[bool, float | None]:
    """(whether every member still running was asked to cancel, the least time any of them has
    reported no progress); (False, None) on a failed read. A pack's child stops a member cancelled
    alone by itself; the whole process is only stopped once all of them are."""
    try:
        with session_scope(engine, readonly=True) as session:
            running = [job for job in (jobs.get_job(session, job_id=c.job_id) for c in claims)
                       if job is not None and job.status == Status.RUNNING.value]
            if not running:
                return False, None
            silences = [s for s in (jobs.seconds_without_progress(job) for job in running) if s is not None]
            return all(job.cancel_requested for job in running), min(silences) if silences else None
    except SQLAlchemyError:
        return False, None


def _ended(engine: Engine, claim: jobs.Claim) -> str | None:
    """The final status this claim's token ended the job with (its child does, for a train job), if any."""
    try:
        with session_scope(engine, readonly=True) as session:
            status = jobs.ended_by(session, job_id=claim.job_id, token=claim.token)
    except SQLAlchemyError:
        return None
    if status is not None:
        log.info("job %s: %s", claim.job_id, status)
    return status


def _finish(engine: Engine, claim: jobs.Claim, status: Status, error: str | None = None, *,
            patience: float = 0.0) -> str:
    done = jobs.transact(engine, lambda session: jobs.finish(session, job_id=claim.job_id, token=claim.token,
                                                             status=status, error=error), patience=patience)
    log.info("job %s: %s%s", claim.job_id, status.value if done else "lease lost before finishing",
             f": {_last_line(error)}" if error and done else "")
    return status.value if done else LOST


def _release(engine: Engine, claim: jobs.Claim, reason: str, *, lost: bool, patience: float = 0.0) -> str:
    status = jobs.transact(engine, lambda session: jobs.release(session, job_id=claim.job_id, token=claim.token,
                                                                reason=reason, lost=lost), patience=patience)
    log.info("job %s: %s (%s)", claim.job_id, status or "lease lost before releasing", reason)
    return status or LOST


def _complete(engine: Engine, claim: jobs.Claim) -> str:
    """Record a run whose training reached its last step but whose status was never written.

    Run and job end together, in one fenced transaction.
    """
    def complete(session) -> bool:
        jobs.fence(claim.job_id, claim.token)(session)
        summary = summarize(crud.get_metrics(session, run_id=claim.run_id), finished=True)
        crud.update_run(session, run_id=claim.run_id, summary=summary, error=None)
        return jobs.finish(session, job_id=claim.job_id, token=claim.token, status=Status.SUCCEEDED)

    try:
        jobs.transact(engine, complete)
    except jobs.LeaseLost:
        return LOST
    log.info("job %s: SUCCEEDED (trained to the end before, recorded now)", claim.job_id)
    return Status.SUCCEEDED.value


def _run_error(engine: Engine, claim: jobs.Claim) -> str | None:
    with session_scope(engine, readonly=True) as session:
        run = crud.get_run(session, run_id=claim.run_id)
        return run.error if run is not None else None


# ---------------------------------------------------------------- the child process


def _child_env(engine: Engine) -> dict[str, str]:
    env = dict(os.environ)
    env["CIRCUITBOARD_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    env[child.SUPERVISOR_PID_ENV] = str(os.getpid())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _kill_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal the child's whole process group (its pid is the group id)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(text: str | None) -> str:
    """The last line that says something (SQLAlchemy's "(Background on this error at ...)" does not)."""
    lines = [line for line in (text or "").strip().splitlines()
             if line.strip() and not line.startswith("(Background on this error")]
    return lines[-1] if lines else ""
