"""The process that does a job's work: ``python -m worker.child JOB_ID TOKEN``.

``worker.execute`` starts it in a new process group, with the database URL in
``CIRCUITBOARD_DATABASE_URL`` and its own pid in ``CIRCUITBOARD_SUPERVISOR_PID``, and reads the
outcome from the exit status (the ``EXIT_*`` codes below). Everything it writes goes through
``jobs.fence(job_id, token)``, so once its supervisor has lost the lease nothing it does lands.

The job's kind picks the work: ``train`` -> ``core.recording.execute_training`` (on the spec's
device, or the worker's, ``CIRCUITBOARD_WORKER_DEVICE``, when the spec names none), which ends the
job in the same transaction as it writes the run's final status (``jobs.finish`` as its
``on_final``), so no crash can leave a finished run behind a RUNNING job; ``intervene``
-> ``core.causal.jobs.execute_intervention_job`` (the same device rule). Both return the final
status: SUCCEEDED, FAILED, or, when asked to stop, the status to hand back.

- SIGTERM asks it to stop: training ends after the current step with a resume checkpoint
  (``execute_training`` writes one when ``should_stop`` ends the loop), and it exits EXIT_STOPPED.
- It dies with its supervisor (Linux ``PR_SET_PDEATHSIG``, and a watcher thread elsewhere), so
  killing a worker never leaves a training process behind.
- A transient database error (locked past the busy timeout, connection lost: ``jobs.is_transient``)
  writes nothing: it prints the error in one line and exits EXIT_INFRA, and the supervisor hands the
  attempt back to resume.

``python -m worker.child JOB_ID TOKEN JOB_ID TOKEN ...`` trains several train jobs as one pack
(``run_pack``): each member's writes are fenced by its own token, each member's job ends as that
member ends (a NaN fails it alone; a cancel request stops it alone), and the exit status speaks for
the members still left: EXIT_SUCCEEDED when none is, EXIT_STOPPED when some stopped on request.

``CIRCUITBOARD_TEST_HOLD_AFTER_FINAL=PATH`` (tests only) makes it write PATH and wait to be killed
once its work has ended SUCCEEDED or FAILED (for a train job: committed, with the job's final status),
holding open the moment between that commit and its exit.

This module's top level is torch-free, so the supervisor can import the exit codes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_SUCCEEDED = 0
EXIT_STOPPED = 10  # stopped on request, after a resume checkpoint
EXIT_FAILED = 11  # the job's own error (exception, NaN loss): no automatic retry
EXIT_LEASE_LOST = 12  # its token no longer owns the job; it wrote nothing more
EXIT_INFRA = 13  # the database failed under it: the attempt counts as lost, the job may retry

SUPERVISOR_PID_ENV = "CIRCUITBOARD_SUPERVISOR_PID"
WORKER_DEVICE_ENV = "CIRCUITBOARD_WORKER_DEVICE"  # set by `circuitboard worker --device`
HOLD_AFTER_FINAL_ENV = "CIRCUITBOARD_TEST_HOLD_AFTER_FINAL"  # tests: pause after the final commit


def die_with_supervisor(supervisor_pid: int) -> None:
    """Exit as soon as the process that started us is gone (it owns our lease)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(1.0)
        os._exit(EXIT_LEASE_LOST)

    if os.getppid() != supervisor_pid:  # it died before we could ask to follow it
        os._exit(EXIT_LEASE_LOST)
    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def report(engine, job_id: int, token: int, p) -> None:
    """Write a training Progress to the job's live figures; raise LeaseLost when no longer owned."""
    figures = {"step": p.step, "total": p.total, "steps_per_s": p.steps_per_s, "loss": p.loss, "lr": p.lr,
               "eta_s": (p.total - p.step) / p.steps_per_s if p.steps_per_s > 0 else None,
               "test_seq_acc": p.test_seq_acc, "peaky": p.peaky}
    report_figures(engine, job_id, token, figures)


def report_figures(engine, job_id: int, token: int, figures: dict) -> None:
    """Write ``figures`` as the job's live progress; raise LeaseLost when no longer owned."""
    from core.db import jobs

    if not jobs.transact(engine, lambda s: jobs.report_progress(s, job_id=job_id, token=token, progress=figures)):
        raise jobs.LeaseLost(f"job {job_id}: token {token} lost the job")


def run_job(engine, job_id: int, token: int, stop: threading.Event) -> str:
    """Do the job's work by its kind; return SUCCEEDED, or what says it stopped on request (training's
    RUNNING, an intervention's ``Outcome.STOPPED``)."""
    from core.db import jobs
    from core.db.session import session_scope
    from core.names import JOB_INTERVENE, JOB_TRAIN

    with session_scope(engine, readonly=True) as session:
        job = jobs.get_job(session, job_id=job_id)
        kind, run_id = job.kind, job.run_id
    guard = jobs.fence(job_id, token)
    if kind == JOB_TRAIN:
        from core.recording import execute_training  # torch, from here on

        def finish(session, status: str, error: str | None) -> None:  # in the run's final transaction
            jobs.finish(session, job_id=job_id, token=token, status=status, error=error)

        return execute_training(engine, run_id, guard=guard, should_stop=stop.is_set,
                                on_progress=lambda p: report(engine, job_id, token, p),
                                device=os.environ.get(WORKER_DEVICE_ENV) or None, on_final=finish)
    if kind == JOB_INTERVENE:
        from core.causal.jobs import execute_intervention_job  # written alongside; torch, from here on

        return execute_intervention_job(engine, job_id, guard=guard, should_stop=stop.is_set,
                                        device=os.environ.get(WORKER_DEVICE_ENV) or None,
                                        on_progress=lambda figures: report_figures(engine, job_id, token, figures))
    raise ValueError(f"a worker child cannot run {kind!r} jobs")


def run_pack(engine, members: list[tuple[int, int]], stop: threading.Event) -> str:
    """Train the runs of several train jobs (``(job id, token)`` each) as one pack; end each member's
    job as it ends. Returns SUCCEEDED when every member's job was ended here (whatever its status),
    RUNNING when some stopped on request and are left for the supervisor to hand back.

    A member whose job is asked to cancel leaves the pack alone (after a resume checkpoint) and ends
    CANCELLED; the others train on. Each member's writes are fenced by its own token.
    """
    from core.db import jobs
    from core.db.models import Status
    from core.db.session import session_scope
    from core.recording import PackMember, execute_pack  # torch, from here on

    with session_scope(engine, readonly=True) as session:
        run_ids = [jobs.get_job(session, job_id=job_id).run_id for job_id, _ in members]
    cancels = CancelWatch(engine, [job_id for job_id, _ in members])

    def member(job_id: int, token: int, run_id: int) -> PackMember:
        def finish(session, status: str, error: str | None) -> None:
            jobs.finish(session, job_id=job_id, token=token, status=status, error=error)
        return PackMember(run_id=run_id, guard=jobs.fence(job_id, token), on_final=finish,
                          on_progress=lambda p: report(engine, job_id, token, p),
                          should_stop=lambda: stop.is_set() or cancels.requested(job_id))

    statuses = execute_pack(engine, [member(j, t, r) for (j, t), r in zip(members, run_ids)],
                            device=os.environ.get(WORKER_DEVICE_ENV) or None)
    cancels.close()
    left = False
    for (job_id, token), status in zip(members, statuses):
        if status != Status.RUNNING.value:
            continue
        if cancels.requested(job_id, fresh=True):  # it checkpointed and left the pack: end it CANCELLED
            jobs.transact(engine, lambda s, j=job_id, t=token: jobs.finish(s, job_id=j, token=t,
                                                                       status=Status.CANCELLED))
        else:
            left = True
    return Status.RUNNING.value if left else Status.SUCCEEDED.value


class CancelWatch:
    """Which of a pack's jobs have a cancel request, read from the database about once a second
    by a thread (so a member's ``should_stop``, asked every step, reads memory)."""

    def __init__(self, engine, job_ids: list[int], every: float = 1.0) -> None:
        self.engine, self.job_ids, self.every = engine, list(job_ids), every
        self.flagged: set[int] = set()
        self.stopped = threading.Event()
        threading.Thread(target=self._poll, name="cancel-watch", daemon=True).start()

    def requested(self, job_id: int, *, fresh: bool = False) -> bool:
        if fresh:
            self._read()
        return job_id in self.flagged

    def close(self) -> None:
        self.stopped.set()

    def _poll(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self._read()
            except Exception:  # noqa: BLE001 - a failed read changes nothing; the next one may succeed
                pass

    def _read(self) -> None:
        from sqlalchemy import select

        from core.db.models import Job
        from core.db.session import session_scope

        with session_scope(self.engine, readonly=True) as session:
            query = select(Job.id).where(Job.id.in_(self.job_ids), Job.cancel_requested.is_(True))
            self.flagged |= set(session.scalars(query))


def main(argv: list[str] | None = None) -> int:
    numbers = [int(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    if not numbers or len(numbers) % 2:
        raise SystemExit("usage: python -m worker.child JOB_ID TOKEN [JOB_ID TOKEN ...]")
    members = list(zip(numbers[::2], numbers[1::2]))
    die_with_supervisor(int(os.environ[SUPERVISOR_PID_ENV]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM

    from core.db import jobs
    from core.db.models import Status
    from core.db.session import make_engine
    from core.settings import Settings

    settings = Settings()
    if settings.train_threads:  # several workers on one machine share its cores (circuitboard serve --local-workers)
        import torch

        torch.set_num_threads(settings.train_threads)
    engine = make_engine(settings.database_url)
    try:
        status = run_job(engine, *members[0], stop) if len(members) == 1 else run_pack(engine, members, stop)
    except jobs.LeaseLost:
        return EXIT_LEASE_LOST
    except Exception as exc:  # noqa: BLE001 - any other error is the job's own, unless the database failed
        if jobs.is_transient(exc):
            print(jobs.describe(exc), file=sys.stderr, flush=True)  # one line: the supervisor's reason
            return EXIT_INFRA
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        engine.dispose()
    _hold_if_asked(status)
    if status == Status.SUCCEEDED.value:
        return EXIT_SUCCEEDED
    if status == Status.FAILED.value:
        return EXIT_FAILED
    return EXIT_STOPPED  # training's RUNNING, an intervention's Outcome.STOPPED


def _hold_if_asked(status: str) -> None:
    """Tests only: once a final status is committed, say so in a file and wait to be killed."""
    path = os.environ.get(HOLD_AFTER_FINAL_ENV)
    if path and status in ("SUCCEEDED", "FAILED"):
        with open(path, "w") as marker:
            marker.write(status)
        while True:
            time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
