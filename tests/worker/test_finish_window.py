"""A worker killed in the finish window: the run stays SUCCEEDED and trains once (issue 16, item 1).

The training child writes the run's final status and ends its job in one transaction; before that,
a worker that died between the run turning SUCCEEDED and its job finishing left a RUNNING job
whose lease the reaper later expired, re-queueing the run (SUCCEEDED -> QUEUED -> RUNNING) and
training it again. Here the child is held right after its final commit
(``CIRCUITBOARD_TEST_HOLD_AFTER_FINAL``, see worker/child.py), the worker's whole process group is
killed there, and a second worker comes up. The test waits for proof that the second worker's
reaper has had its chance (a canary job, claimed after the kill by a worker that never heartbeats,
is reaped: its lease expires no earlier than the killed one's) while a thread watches the run's
status the whole time. On both deployments: SQLite + ``worker.local`` and PostgreSQL + Redis + Celery.
"""

from __future__ import annotations

import signal

from core.db import crud, jobs
from core.db.session import session_scope
from core.submit import dispatch
from tests.worker.support import (
    FAST,
    LEASE,
    StatusWatch,
    events,
    job_row,
    new_job,
    run_row,
    started,
    training_children,
    wait_for,
    wait_status,
)
from worker.child import HOLD_AFTER_FINAL_ENV
from worker.execute import DROPPED, execute_job

QUICK = {**FAST, "steps": 10}


def test_a_worker_killed_after_the_final_commit_leaves_the_run_succeeded_and_trained_once(stack, workers, tmp_path):
    marker = tmp_path / "final-committed"
    first = started(stack, workers, env={HOLD_AFTER_FINAL_ENV: str(marker)})
    run_id, job_id = new_job(stack.engine, QUICK)
    dispatch(stack.settings, [job_id])
    wait_for(marker.exists, timeout=60, interval=0.01, what="the child's final commit")

    watch = StatusWatch(stack.engine, run_id)
    watch.start()
    workers.signal(first, signal.SIGKILL)  # the supervisor dies in the finish window
    first.wait()
    wait_for(lambda: not training_children(workers.tag), timeout=10, what="the held child to die with it")
    with session_scope(stack.engine) as session:  # a canary whose lease expires after the killed job's
        canary_run = crud.create_run(session, spec=QUICK, total_steps=QUICK["steps"]).id
        canary = jobs.submit_train_job(session, run_id=canary_run).id
    with session_scope(stack.engine) as session:
        assert jobs.claim(session, job_id=canary, worker_id="ghost", lease_seconds=LEASE) is not None

    second = started(stack, workers)
    wait_for(lambda: events(job_row(stack.engine, canary), "lost"), timeout=LEASE + 30, interval=0.1,
             what="the second worker's reaper to reap the canary")
    assert wait_status(stack.engine, canary, "SUCCEEDED", "FAILED", timeout=60).status == "SUCCEEDED"
    watch.stop()

    assert watch.seen == ["SUCCEEDED"]  # never demoted, not for a moment
    job = job_row(stack.engine, job_id)
    assert (job.status, job.attempt, job.fencing_token) == ("SUCCEEDED", 1, 1), job.payload
    assert [e["event"] for e in events(job)] == ["claimed", "finished"]  # trained once, nothing reaped
    run = run_row(stack.engine, run_id)
    assert (run.status, run.step, run.error) == ("SUCCEEDED", QUICK["steps"], None)
    assert run.summary["accuracy"]["test"]["seq_acc"] is not None
    with session_scope(stack.engine, readonly=True) as session:
        rows = crud.get_metrics(session, run_id=run_id)
    assert sorted(step for key, step, _ in rows if key == "test/seq_acc") == [0, 10]  # each evaluation once

    # a late re-delivery of the finished job does no work, in-process or through the broker
    assert execute_job(job_id, engine=stack.engine, worker_id="late", settings=stack.settings) == DROPPED
    if stack.kind == "celery":
        dispatch(stack.settings, [job_id])
        wait_for(lambda: f"job {job_id}: not QUEUED, delivery dropped" in workers.log(second), timeout=30,
                 what="the re-delivered message to be dropped")
    assert job_row(stack.engine, job_id).fencing_token == 1
    assert workers.stop(second, timeout=30) == 0
