"""The embedded dispatcher as real processes: ``python -m worker.local`` with its training children.

Leases are 3 s with a 1 s heartbeat (see support.WORKER_ENV). Each test accounts for every process
it started: the ``workers`` fixture fails it if any is left behind.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

from core.db import crud, jobs
from core.db.session import session_scope
from tests.worker.support import (
    FAST,
    LEASE,
    SLOW,
    events,
    fingerprint,
    job_row,
    new_job,
    pause_between_writes,
    run_row,
    training_children,
    wait_for,
    wait_status,
)


def ready(workers, worker) -> None:
    """Wait until the worker is polling the queue."""
    wait_for(lambda: "on queues" in workers.log(worker), timeout=20, what="the worker to start")


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def step_reached(engine, run_id: int, step: int) -> bool:
    return run_row(engine, run_id).step >= step


def test_a_submitted_job_succeeds_with_everything_recorded(engine, workers):
    worker = workers.start(engine.url)
    ready(workers, worker)
    run_id, job_id = new_job(engine)
    job = wait_status(engine, job_id, "SUCCEEDED", "FAILED", timeout=40)
    assert job.status == "SUCCEEDED", job.error
    latency = (job.started_at - job.created_at).total_seconds()
    assert latency < 2.0, f"queue latency {latency:.2f} s"  # embedded mode starts a job within 2 s

    assert (job.attempt, job.fencing_token, job.lease_expires_at) == (1, 1, None)
    assert job.progress["step"] == job.progress["total"] == FAST["steps"]
    assert {"steps_per_s", "eta_s", "loss", "test_seq_acc"} <= job.progress.keys()
    assert [e["event"] for e in events(job)] == ["claimed", "finished"]
    run = run_row(engine, run_id)
    assert (run.status, run.step, run.error) == ("SUCCEEDED", FAST["steps"], None)
    assert run.summary["accuracy"]["test"]["seq_acc"] is not None
    with session_scope(engine, readonly=True) as session:
        keys = {key for key, _, _ in crud.get_metrics(session, run_id=run_id)}
        assert {"train/loss", "test/seq_acc"} <= keys
        assert crud.list_snapshot_steps(session, run_id=run_id) == [0, 10, 20]
        assert crud.checkpoint_steps(session, run_id=run_id, kind="weights") == [0, 10, 20]
        assert crud.checkpoint_steps(session, run_id=run_id, kind="resume") == [10, 15, 20]
    # an intervention on the finished run goes through the same worker and reports its progress
    with session_scope(engine) as session:
        spec = {"kind": "edge", "heads": ["L0H0"], "variants": ["raw"], "steps": "all", "rows_per_len": 4}
        intervene_id = jobs.submit_intervention_job(session, run_id=run_id, spec=spec).id
    job = wait_status(engine, intervene_id, "SUCCEEDED", "FAILED", timeout=40)
    assert job.status == "SUCCEEDED", job.error
    assert job.progress["done"] == job.progress["total"] == 3  # snapshot steps 0, 10, 20
    assert run_row(engine, run_id).status == "SUCCEEDED"
    assert workers.stop(worker) == 0


def test_a_killed_worker_is_detected_and_its_job_resumes_elsewhere(engine, workers):
    run_id, job_id = new_job(engine, SLOW)
    first = workers.start(engine.url)
    wait_for(lambda: step_reached(engine, run_id, 12), timeout=40, interval=0.02, what="step 12")
    workers.signal(first, signal.SIGKILL)  # the worker's process group: supervisor gone at once
    killed_at = time.monotonic()
    first.wait()
    wait_for(lambda: not training_children(workers.tag), timeout=3, what="the orphaned child to die")
    reached = run_row(engine, run_id).step  # committed by the killed attempt; nothing moves now

    second = workers.start(engine.url)
    wait_for(lambda: events(job_row(engine, job_id), "lost"), timeout=LEASE + 5, interval=0.1, what="the reaper")
    detected = time.monotonic() - killed_at
    assert detected <= LEASE + 2, f"lost job detected after {detected:.1f} s"
    job = wait_status(engine, job_id, "SUCCEEDED", "FAILED", timeout=40)
    assert job.status == "SUCCEEDED", job.error

    [lost] = events(job, "lost")
    assert lost["reason"].startswith("worker lost: no heartbeat for") and lost["at_step"] == reached
    starts = [event["from_step"] for event in events(job, "claimed")]
    assert starts[0] == 0 and reached - SLOW["checkpoint_every"] < starts[1] <= reached + 1
    executed = (reached - starts[0]) + (SLOW["steps"] - starts[1])
    assert executed <= SLOW["steps"] + SLOW["checkpoint_every"]
    assert (job.attempt, job.fencing_token) == (2, 2)
    with session_scope(engine, readonly=True) as session:
        rows = crud.get_metrics(session, run_id=run_id)
        assert crud.list_snapshot_steps(session, run_id=run_id) == list(range(SLOW["steps"] + 1))
    pairs = [(key, step) for key, step, _ in rows]
    assert len(pairs) == len(set(pairs))  # every (key, step) once
    assert sorted(step for key, step in pairs if key == "train/loss") == list(range(1, SLOW["steps"] + 1))
    assert sorted(step for key, step in pairs if key == "test/seq_acc") == list(range(SLOW["steps"] + 1))
    assert workers.stop(second) == 0


def test_a_child_killed_on_every_attempt_fails_after_max_attempts(sqlite_engine, sqlite_url, workers):
    engine = sqlite_engine
    run_id, job_id = new_job(engine)
    worker = workers.start(sqlite_url)
    killed: set[int] = set()

    def kill_children():
        for child in training_children(workers.tag):
            if child.pid not in killed:
                killed.add(child.pid)
                child.kill()
        return job_row(engine, job_id).status == "FAILED"

    wait_for(kill_children, timeout=40, interval=0.05, what="the job to fail")
    job = job_row(engine, job_id)
    assert (job.attempt, job.fencing_token, len(killed)) == (3, 3, 3)
    reasons = [event["reason"] for event in events(job, "lost")]
    assert reasons == ["training process killed by SIGKILL"] * 3
    assert job.error == "training process killed by SIGKILL (gave up after 3 attempts)"
    assert run_row(engine, run_id).status == "FAILED"
    time.sleep(1.5)  # not in a loop: nothing claims it again
    assert job_row(engine, job_id).fencing_token == 3 and not training_children(workers.tag)
    assert workers.stop(worker) == 0


def test_a_paused_worker_writes_nothing_after_takeover(sqlite_engine, sqlite_url, workers):
    engine = sqlite_engine
    run_id, job_id = new_job(engine, SLOW)
    paused = workers.start(sqlite_url)
    wait_for(lambda: step_reached(engine, run_id, 5), timeout=40, interval=0.02, what="step 5")
    [child] = training_children(workers.tag)
    groups = [paused.pid, child.pid]
    pause_between_writes(sqlite_url.database, groups)

    other = workers.start(sqlite_url)  # reaps the paused worker's job after its lease, and finishes it
    job = wait_status(engine, job_id, "SUCCEEDED", "FAILED", timeout=60)
    assert job.status == "SUCCEEDED", job.error
    assert job.attempt == 2 and events(job, "lost")
    before = fingerprint(engine, run_id, job_id)

    for group in groups:
        os.killpg(group, signal.SIGCONT)
    wait_for(lambda: "lease lost" in workers.log(paused), timeout=10, what="the paused worker to notice")
    wait_for(lambda: gone(child), timeout=10, what="its child to stop")
    time.sleep(1.0)
    assert fingerprint(engine, run_id, job_id) == before  # not one write after the takeover
    assert workers.stop(paused) == 0 and workers.stop(other) == 0


def test_cancel_of_a_queued_and_of_a_running_job(sqlite_engine, workers):
    engine = sqlite_engine
    running_run, running = new_job(engine, SLOW)
    waiting_run, waiting = new_job(engine)
    worker = workers.start(engine.url)
    wait_for(lambda: step_reached(engine, running_run, 3), timeout=40, interval=0.05, what="step 3")
    with session_scope(engine) as session:
        assert jobs.request_cancel(session, job_id=waiting) == "CANCELLED"
        assert jobs.request_cancel(session, job_id=running) == "RUNNING"
    asked = time.monotonic()
    job = wait_status(engine, running, "CANCELLED", "SUCCEEDED", "FAILED", timeout=15)
    assert job.status == "CANCELLED", job.error
    assert time.monotonic() - asked < 5
    assert run_row(engine, running_run).status == "CANCELLED"
    wait_for(lambda: not training_children(workers.tag), timeout=5, what="the child to be gone")
    before = fingerprint(engine, running_run, running)
    time.sleep(1.5)
    assert fingerprint(engine, running_run, running) == before  # nothing written after CANCELLED

    never = job_row(engine, waiting)
    assert (never.status, never.attempt, events(never, "claimed")) == ("CANCELLED", 0, [])
    assert run_row(engine, waiting_run).status == "CANCELLED"
    assert workers.stop(worker) == 0


def test_graceful_shutdown_checkpoints_and_releases_the_job(sqlite_engine, sqlite_url, workers):
    engine = sqlite_engine
    run_id, job_id = new_job(engine, SLOW)
    first = workers.start(sqlite_url)
    wait_for(lambda: step_reached(engine, run_id, 7), timeout=40, interval=0.02, what="step 7")
    assert workers.stop(first) == 0  # SIGTERM: the job goes back to the queue after a checkpoint
    job = job_row(engine, job_id)
    stopped_at = run_row(engine, run_id).step
    assert (job.status, job.attempt, job.worker_id) == ("QUEUED", 0, None)
    assert events(job, "released")
    with session_scope(engine, readonly=True) as session:
        assert max(crud.checkpoint_steps(session, run_id=run_id, kind="resume")) == stopped_at
    assert not training_children(workers.tag)

    second = workers.start(sqlite_url)
    job = wait_status(engine, job_id, "SUCCEEDED", "FAILED", timeout=40)
    assert job.status == "SUCCEEDED", job.error
    assert [event["from_step"] for event in events(job, "claimed")] == [0, stopped_at]
    assert job.attempt == 1
    assert workers.stop(second) == 0
