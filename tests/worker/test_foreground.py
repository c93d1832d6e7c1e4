"""``circuitboard train`` in the foreground, run as a user runs it: a real CLI process and its training child.

A foreground run is a job this process claims: while it trains, its job carries live progress (what
the run page shows); Ctrl-C ends it CANCELLED after a resume checkpoint, never RUNNING; it resumes
from there with ``--resume`` here, or with the dashboard's retry through any worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from core.db import crud, jobs
from core.db.session import session_scope
from core.settings import Settings
from tests.worker.support import ROOT, SLOW, WORKER_ENV, events, foreground_train, job_row, only_run, run_row, wait_for
from worker.execute import execute_job

SPEC = {**SLOW, "steps": 40, "checkpoint_every": 5, "warmup_steps": 0}


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_cli_left_behind():
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def start_train(url: str, *args: str) -> subprocess.Popen:
    process = foreground_train(url, SPEC, *args)
    STARTED.append(process)
    return process


def trained(engine, steps: int) -> bool:
    run = only_run(engine)
    return run is not None and run.step >= steps


def test_ctrl_c_ends_a_foreground_run_cancelled_and_it_resumes_from_its_checkpoint(sqlite_url, sqlite_engine):
    engine, url = sqlite_engine, sqlite_url.render_as_string(hide_password=False)
    cli = start_train(url)
    wait_for(lambda: trained(engine, 8), timeout=90, what="the foreground run to train a few steps")
    run = only_run(engine)
    job = jobs_of(engine, run.id)[0]
    assert (run.status, job.status) == ("RUNNING", "RUNNING")
    assert job.worker_id.startswith("cli:")
    assert job.progress["steps_per_s"] > 0 and job.progress["loss"] is not None  # what the run page shows

    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, err
    stopped = only_run(engine)
    assert (stopped.status, job_row(engine, job.id).status) == ("CANCELLED", "CANCELLED")
    assert f"circuitboard train --resume {stopped.id}" in err
    with session_scope(engine, readonly=True) as session:
        assert max(crud.checkpoint_steps(session, run_id=stopped.id, kind="resume")) == stopped.step

    resumed = start_train(url, "--resume", str(stopped.id))
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"run {stopped.id} SUCCEEDED" in err and "[SUCCEEDED]" in out
    done = job_row(engine, job.id)
    assert events(done, "claimed")[-1]["from_step"] == stopped.step
    assert only_run(engine).step == SPEC["steps"]
    with session_scope(engine, readonly=True) as session:
        evaluated = [step for key, step, _ in crud.get_metrics(session, run_id=stopped.id) if key == "test/seq_acc"]
    assert evaluated == list(range(SPEC["steps"] + 1))  # every evaluation once, across the two sittings


def test_a_cancelled_foreground_run_resumes_through_a_worker_from_the_dashboards_retry(sqlite_url, sqlite_engine,
                                                                                   monkeypatch):
    engine, url = sqlite_engine, sqlite_url.render_as_string(hide_password=False)
    cli = start_train(url)
    wait_for(lambda: trained(engine, 5), timeout=90, what="the foreground run to start")
    cli.send_signal(signal.SIGINT)
    cli.communicate(timeout=60)
    run = only_run(engine)
    assert run.status == "CANCELLED"
    job = jobs_of(engine, run.id)[0]
    with session_scope(engine) as session:  # what POST /api/runs/{id}/retry does
        jobs.retry(session, job_id=job.id)
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    assert execute_job(job.id, engine=engine, worker_id="worker", settings=Settings(lease_seconds=3,
                                                                                     heartbeat_seconds=1)) == "SUCCEEDED"
    assert events(job_row(engine, job.id), "claimed")[-1]["from_step"] == run.step
    assert run_row(engine, run.id).status == "SUCCEEDED"


def test_resume_refuses_a_run_that_has_nothing_to_resume(sqlite_url, sqlite_engine):
    url = sqlite_url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITBOARD_")}
    missing = subprocess.run([sys.executable, "-m", "core.cli", "train", "--resume", "42", "--db", url],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "circuitboard train: run 42 has no train job to resume"


def jobs_of(engine, run_id: int) -> list:
    with session_scope(engine, readonly=True) as session:
        found = [jobs.latest_train_job(session, run_id=run_id)]
        for job in found:
            session.expunge(job)
        return found
