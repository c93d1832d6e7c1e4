"""The execution path (worker.execute.execute_job), called in-process; the training child is real."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from core.db import crud
from core.db.session import session_scope
from core.settings import Settings
from tests.worker.support import FAST, ROOT, WORKER_ENV, events, job_row, new_job, run_row
from worker import execute
from worker.execute import DROPPED, execute_job

SETTINGS = Settings(lease_seconds=3, heartbeat_seconds=1, stop_grace_seconds=5)


def test_the_supervisor_side_never_loads_torch():
    code = "import sys, worker.execute, worker.local; print('torch' in sys.modules, 'core.ml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_an_invalid_spec_fails_before_any_process_starts(engine, monkeypatch):
    run_id, job_id = new_job(engine, {"problem": "parity", "d_model": -3, "steps": 40}, validate=False)

    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started for an invalid spec")

    monkeypatch.setattr(execute.subprocess, "Popen", no_child)
    assert execute_job(job_id, engine=engine, worker_id="w", settings=SETTINGS) == "FAILED"
    job, run = job_row(engine, job_id), run_row(engine, run_id)
    assert job.status == run.status == "FAILED"
    assert job.error.startswith("invalid spec: ") and "d_model" in job.error and run.error == job.error
    with session_scope(engine, readonly=True) as session:
        assert crud.get_metrics(session, run_id=run_id) == []
        assert crud.checkpoint_steps(session, run_id=run_id) == []
    assert execute_job(job_id, engine=engine, worker_id="w", settings=SETTINGS) == DROPPED


def test_a_run_trained_to_the_end_is_recorded_without_training_again(engine, monkeypatch):
    run_id, job_id = new_job(engine)  # its last worker died after the final checkpoint, before the status
    with session_scope(engine) as session:
        crud.put_checkpoint(session, run_id=run_id, step=FAST["steps"], kind="resume", data=b"final")
        crud.upsert_metrics(session, run_id=run_id, rows=[("test/seq_acc", FAST["steps"], 1.0)])
    monkeypatch.setattr(execute.subprocess, "Popen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert execute_job(job_id, engine=engine, worker_id="w", settings=SETTINGS) == "SUCCEEDED"
    run = run_row(engine, run_id)
    assert run.status == "SUCCEEDED" and run.summary["accuracy"]["test"]["seq_acc"] == 1.0


def test_a_code_error_fails_once_with_its_message(sqlite_engine, monkeypatch):
    engine = sqlite_engine
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    run_id, job_id = new_job(engine, init_from="999@5")  # valid, but there is no run 999 to start from
    assert execute_job(job_id, engine=engine, worker_id="w", settings=SETTINGS) == "FAILED"
    job = job_row(engine, job_id)
    assert (job.status, job.attempt) == ("FAILED", 1)  # no automatic retry
    assert "init_from: run 999 has no checkpoint at step 5" in job.error
    assert run_row(engine, run_id).status == "FAILED"


DELIVER = """
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
from core.db.session import make_engine
from core.settings import get_settings
from worker.execute import execute_job
url, job_id, n, start_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
engine = make_engine(url)
time.sleep(max(0.0, start_at - time.time()))  # both processes deliver at the same moment
with ThreadPoolExecutor(n) as pool:
    outcomes = pool.map(lambda i: execute_job(job_id, engine=engine, worker_id=f"{os.getpid()}.{i}",
                                              settings=get_settings()), range(n))
    print(" ".join(outcomes))
"""


def test_five_concurrent_deliveries_to_two_workers_train_once(engine, workers):
    run_id, job_id = new_job(engine)
    url = engine.url.render_as_string(hide_password=False)
    start_at = f"{time.time() + 1.5:.3f}"  # after both interpreters have started
    processes = [subprocess.Popen([sys.executable, "-c", DELIVER, url, str(job_id), str(n), start_at], cwd=ROOT,
                                  env=workers.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in (3, 2)]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        outcomes += out.split()
    assert sorted(outcomes) == ["DROPPED"] * 4 + ["SUCCEEDED"]
    job = job_row(engine, job_id)
    assert (job.status, job.attempt, job.fencing_token) == ("SUCCEEDED", 1, 1)
    assert len(events(job, "claimed")) == 1
    assert run_row(engine, run_id).status == "SUCCEEDED"
    assert job.progress["step"] == job.progress["total"] == FAST["steps"]


def test_a_database_error_mid_training_is_never_written_as_the_runs_failure(sqlite_engine, one_thread):
    from sqlalchemy.exc import OperationalError

    from core.recording import execute_training

    engine = sqlite_engine
    run_id, _ = new_job(engine)
    calls = []

    def guard(session) -> None:  # the fifth write meets a locked file; every later one would go through
        calls.append(1)
        if len(calls) == 5:
            raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))

    with pytest.raises(OperationalError, match="database is locked"):
        execute_training(engine, run_id, guard=guard)
    assert len(calls) == 5  # it stopped there: no FAILED written after it
    run = run_row(engine, run_id)
    assert (run.status, run.error, run.finished_at) == ("RUNNING", None, None)
