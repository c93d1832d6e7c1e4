"""A training child that stops making progress is killed and its job resumed (issue 16, item 7).

The child is frozen with SIGSTOP (between two of its writes, so SQLite's write lock stays free: see
``support.pause_between_writes``); its supervisor keeps the lease, but the job reports no progress.
``jobs.seconds_without_progress`` (what a run page shows as "no progress for N min") grows, and
after ``CIRCUITBOARD_STALL_SECONDS`` (10 s here) the supervisor kills the child and treats the attempt
as lost: the job goes back to the queue and resumes from its last checkpoint.
"""

from __future__ import annotations

import time

import psutil

from core.db import crud, jobs
from core.db.session import session_scope
from tests.worker.support import (
    SLOW,
    events,
    job_row,
    new_job,
    pause_between_writes,
    run_row,
    training_children,
    wait_for,
    wait_status,
)

STALL = 10


def silent_for(engine, job_id: int) -> float:
    return jobs.seconds_without_progress(job_row(engine, job_id)) or 0.0


def test_a_stopped_child_is_killed_after_the_stall_time_and_its_job_resumes(sqlite_engine, sqlite_url, workers):
    engine = sqlite_engine
    run_id, job_id = new_job(engine, SLOW)
    worker = workers.start(sqlite_url, env={"CIRCUITBOARD_STALL_SECONDS": str(STALL)})
    wait_for(lambda: run_row(engine, run_id).step >= SLOW["checkpoint_every"] + 1, timeout=60, interval=0.02,
             what="training past its first resume checkpoint")
    [child] = training_children(workers.tag)
    assert silent_for(engine, job_id) < STALL / 2  # it reports progress several times a second
    pause_between_writes(sqlite_url.database, [child.pid])
    stopped_at, frozen = time.monotonic(), run_row(engine, run_id).step

    wait_for(lambda: silent_for(engine, job_id) >= STALL / 2, timeout=STALL, interval=0.2,
             what="the job's silence to show")
    assert job_row(engine, job_id).status == "RUNNING" and run_row(engine, run_id).step == frozen
    wait_for(lambda: events(job_row(engine, job_id), "lost"), timeout=STALL + 20, interval=0.1,
             what="the supervisor to give up on the stopped child")
    waited = time.monotonic() - stopped_at
    assert waited >= STALL - 1, f"killed after {waited:.1f} s of silence"  # not before the stall time
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, timeout=10,
             what="the stopped child to be killed")

    job = wait_status(engine, job_id, "SUCCEEDED", "FAILED", timeout=60)
    assert job.status == "SUCCEEDED", (job.error, workers.log(worker)[-3000:])
    assert [e["event"] for e in events(job)] == ["claimed", "lost", "claimed", "finished"], job.payload
    [lost] = events(job, "lost")
    assert lost["reason"] == f"no progress for {STALL} s: training process killed (hung or stopped)"
    assert (lost["became"], lost["at_step"], job.attempt) == ("QUEUED", frozen, 2)
    assert 0 < events(job, "claimed")[1]["from_step"] <= frozen  # resumed from its last checkpoint
    assert jobs.seconds_without_progress(job) is None  # finished: not RUNNING, so no silence to show
    with session_scope(engine, readonly=True) as session:
        rows = crud.get_metrics(session, run_id=run_id)
    assert sorted(step for key, step, _ in rows if key == "test/seq_acc") == list(range(SLOW["steps"] + 1))
    assert run_row(engine, run_id).status == "SUCCEEDED"
    assert workers.stop(worker) == 0
