"""Both dispatchers end to end, as real processes: the same jobs through either one.

``stack`` (tests/worker/conftest.py) is parametrised over the two deployments:

- ``local``: SQLite and ``python -m worker.local`` (the embedded default; no broker);
- ``celery``: PostgreSQL, a private ``redis-server`` and ``circuitboard worker --broker ...``, a real
  Celery worker (solo pool), with jobs published by ``core.submit.dispatch``.

Celery-only tests: a 2x2 sweep (its cells published by the worker that expands it), a forged
message, a Redis restart mid-run, and a graceful SIGTERM.
Leases are 3 s, heartbeats 1 s, re-publishing after 2 s (tests/worker/support.py).
"""

from __future__ import annotations

import signal
import pytest
from celery import Celery

from core.db import crud, jobs
from core.db.session import session_scope
from core.names import EXECUTE_JOB_TASK
from core.specs.run import RunSpec
from core.specs.sweep import SweepSpec
from core.submit import dispatch, submit_run
from core.sweeps import create_sweep, sweep_cells
from tests.worker.support import (
    FAST,
    SLOW,
    events,
    job_row,
    new_job,
    run_row,
    started,
    wait_for,
    wait_status,
)

QUICK = {**FAST, "steps": 10}  # snapshots at 0 and 10, resume checkpoints at 5 and 10
MEDIUM = {**SLOW, "steps": 12}  # an evaluation every step: long enough to act mid-run
TINY_SWEEP = {"overrides": QUICK, "axes": {"d_model": [16, 32], "max_len": [2, 3]}}


def test_a_job_submitted_through_the_dispatcher_succeeds_with_its_records(stack, workers):
    worker = started(stack, workers)
    with session_scope(stack.engine) as session:
        queued = submit_run(session, spec=RunSpec.from_flat(QUICK), name="one", key="once")
    dispatch(stack.settings, [queued.job_id])

    job = wait_status(stack.engine, queued.job_id, "SUCCEEDED", "FAILED", timeout=60)
    assert job.status == "SUCCEEDED", (job.error, workers.log(worker)[-3000:])
    assert [e["event"] for e in events(job)] == ["claimed", "finished"]
    with session_scope(stack.engine, readonly=True) as session:
        run = crud.get_run(session, run_id=queued.run_id)
        assert (run.status, run.step) == ("SUCCEEDED", QUICK["steps"])
        assert run.summary["accuracy"]["test"]["seq_acc"] is not None
        assert {"train/loss", "test/seq_acc"} <= {key for key, _, _ in crud.get_metrics(session, run_id=run.id)}
        assert crud.list_snapshot_steps(session, run_id=run.id) == [0, 10]
        assert crud.checkpoint_steps(session, run_id=run.id, kind="weights") == [0, 10]
        assert crud.checkpoint_steps(session, run_id=run.id, kind="resume") == [5, 10]
    assert workers.stop(worker, timeout=30) == 0


@pytest.mark.postgres
@pytest.mark.redis
def test_a_2x2_sweep_expands_into_four_runs_that_all_succeed(celery_stack, workers):
    stack = celery_stack  # the sweep job runs on a worker, which publishes its cells' jobs to the broker
    pair = [stack.start(), stack.start()]  # two workers on the cpu queue, as `--scale worker-cpu=2` would run
    for worker in pair:
        wait_for(lambda: stack.ready_line in workers.log(worker), timeout=30, what="both Celery workers to start")
    with session_scope(stack.engine) as session:
        sweep = create_sweep(session, spec=SweepSpec.parse(TINY_SWEEP), name="grid")
    dispatch(stack.settings, [sweep.job_id])
    assert wait_status(stack.engine, sweep.job_id, "SUCCEEDED", "FAILED", timeout=30).status == "SUCCEEDED"

    def cells():
        with session_scope(stack.engine, readonly=True) as session:
            return sweep_cells(session, sweep_id=sweep.sweep_id)

    grid = wait_for(lambda: (found := cells()) and all(c["run"] for c in found) and found, timeout=10,
                    what="the sweep's 4 runs")
    claimed_by = set()
    for cell in grid:
        with session_scope(stack.engine, readonly=True) as session:
            job_id = jobs.latest_job_for_run(session, run_id=cell["run"]["id"]).id
        job = wait_status(stack.engine, job_id, "SUCCEEDED", "FAILED", timeout=60)
        assert job.status == "SUCCEEDED", job.error
        claimed_by |= {event["worker"] for event in events(job, "claimed")}
    assert len(claimed_by) == 2  # both workers took cells: one job at a time each
    grid = cells()
    assert [c["run"]["status"] for c in grid] == ["SUCCEEDED"] * 4
    assert [c["cell"] for c in grid] == [{"d_model": 16, "max_len": 2}, {"d_model": 16, "max_len": 3},
                                         {"d_model": 32, "max_len": 2}, {"d_model": 32, "max_len": 3}]
    for cell in grid:
        with session_scope(stack.engine, readonly=True) as session:
            spec = crud.get_run(session, run_id=cell["run"]["id"]).spec
        assert (spec["d_model"], spec["max_len"]) == (cell["cell"]["d_model"], cell["cell"]["max_len"])
        assert cell["run"]["summary"]["accuracy"]["test"]["seq_acc"] is not None
    assert [workers.stop(worker, timeout=30) for worker in pair] == [0, 0]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_forged_message_with_an_invalid_spec_fails_before_training(celery_stack, workers):
    worker = started(celery_stack, workers)
    forger = Celery("forger", broker=celery_stack.settings.broker_url, set_as_current=False)
    forger.conf.task_serializer = "json"
    forger.send_task(EXECUTE_JOB_TASK, args=["1; DROP TABLE jobs"], queue="cpu")  # not a job id: dropped
    run_id, job_id = new_job(celery_stack.engine, validate=False, d_model=65536, n_heads=3)
    forger.send_task(EXECUTE_JOB_TASK, args=[job_id], queue="cpu")  # straight to the queue, no dispatch

    job = wait_status(celery_stack.engine, job_id, "FAILED", "SUCCEEDED", timeout=30)
    assert job.status == "FAILED"
    assert job.error.startswith("invalid spec: "), job.error
    assert "d_model: must be <= 2048 (got 65536)" in job.error
    assert [e["event"] for e in events(job)] == ["claimed", "finished"]
    assert "steps_per_s" not in job.progress  # no training child ever reported
    run = run_row(celery_stack.engine, run_id)
    assert (run.status, run.step) == ("FAILED", 0)
    with session_scope(celery_stack.engine, readonly=True) as session:
        assert crud.get_probe_set(session, run_id=run_id) is None  # the first thing training writes
        assert crud.get_metrics(session, run_id=run_id) == []
    log = workers.log(worker)
    assert "dropped a message whose job id is not an integer: '1; DROP TABLE jobs'" in log
    assert f"job {job_id}: FAILED: invalid spec" in log
    assert workers.stop(worker, timeout=30) == 0


@pytest.mark.postgres
@pytest.mark.redis
def test_a_redis_restart_mid_run_loses_no_job(celery_stack, workers, redis_server):
    worker = started(celery_stack, workers)
    running_run, running = new_job(celery_stack.engine, MEDIUM)
    waiting = [new_job(celery_stack.engine, QUICK)[1] for _ in range(2)]
    dispatch(celery_stack.settings, [running, *waiting])
    wait_for(lambda: run_row(celery_stack.engine, running_run).step >= 3, timeout=40, interval=0.05,
             what="the first job to be mid-run")
    assert all(job_row(celery_stack.engine, job_id).status == "QUEUED" for job_id in waiting)
    assert "re-publishing" not in workers.log(worker)  # due, but their queue still holds them: only busy

    redis_server.kill()  # no persistence: the waiting jobs' messages are gone
    redis_server.start()  # same port, empty

    for job_id in [running, *waiting]:
        job = wait_status(celery_stack.engine, job_id, "SUCCEEDED", "FAILED", timeout=60)
        assert job.status == "SUCCEEDED", (job.error, workers.log(worker)[-3000:])
    assert job_row(celery_stack.engine, running).attempt == 1  # the running job never noticed
    assert "re-publishing" in workers.log(worker)
    assert workers.stop(worker, timeout=30) == 0


@pytest.mark.postgres
@pytest.mark.redis
def test_sigterm_hands_the_job_back_and_a_killed_workers_job_is_reaped_and_resumed(celery_stack, workers):
    stack = celery_stack
    run_id, job_id = new_job(stack.engine, SLOW)  # 30 steps: the first worker may run on a few after SIGTERM
    first = started(stack, workers)
    dispatch(stack.settings, [job_id])
    wait_for(lambda: run_row(stack.engine, run_id).step >= 4, timeout=40, interval=0.05, what="step 4")

    assert workers.stop(first, timeout=30) == 0  # SIGTERM: warm shutdown; the job checkpoints, is handed back
    job = job_row(stack.engine, job_id)
    assert job.status == "QUEUED" and job.attempt == 0, job.payload  # a hand-back costs no attempt
    assert events(job, "released")

    second = started(stack, workers)  # takes the re-published job, resumes it...
    wait_for(lambda: len(events(job_row(stack.engine, job_id), "claimed")) == 2, timeout=40, interval=0.05,
             what="the second worker's claim")
    resumed_from = events(job_row(stack.engine, job_id), "claimed")[1]["from_step"]
    wait_for(lambda: run_row(stack.engine, run_id).step > resumed_from, timeout=40, interval=0.05,
             what="a step past the resume point")
    workers.signal(second, signal.SIGKILL)  # ...and dies mid-run, its message never acknowledged

    third = started(stack, workers)  # its upkeep reaps the expired lease and publishes the job again
    job = wait_status(stack.engine, job_id, "SUCCEEDED", "FAILED", timeout=60)
    assert job.status == "SUCCEEDED", (job.error, workers.log(third)[-3000:])
    claims, lost = events(job, "claimed"), events(job, "lost")
    assert len(claims) == 3, claims  # resumed twice
    assert claims[1]["from_step"] >= 4 and claims[2]["from_step"] >= claims[1]["from_step"]
    assert len(lost) == 1 and lost[0]["reason"].startswith("worker lost: no heartbeat")
    assert job.attempt == 2  # the hand-back cost nothing, the killed worker one attempt
    with session_scope(stack.engine, readonly=True) as session:
        steps = [step for key, step, _ in crud.get_metrics(session, run_id=run_id) if key == "test/seq_acc"]
    assert steps == list(range(31))  # every evaluation once
    assert workers.stop(third, timeout=30) == 0
