"""``circuitboard jobs`` and ``circuitboard worker``, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

from core.cli.jobs import progress_cell
from core.db import jobs
from core.db.session import session_scope
from tests.worker.support import ROOT, new_job


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITBOARD_")}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_core_cli_does_not_import_the_worker():
    code = "import sys, core.cli; print(any(m == 'worker' or m.startswith('worker.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_jobs_lists_jobs_with_a_progress_column(sqlite_engine, sqlite_url):
    _, first = new_job(sqlite_engine)
    _, second = new_job(sqlite_engine)
    with session_scope(sqlite_engine) as session:
        claim = jobs.claim(session, job_id=first, worker_id="w", lease_seconds=60)
        jobs.report_progress(session, job_id=first, token=claim.token,
                             progress={"step": 5, "total": 20, "steps_per_s": 2.5, "eta_s": 6.0, "loss": 0.5})
        jobs.request_cancel(session, job_id=second)
    result = cli("jobs", "--db", str(sqlite_url))
    assert result.returncode == 0, result.stderr
    header, newest, oldest = result.stdout.splitlines()
    assert "progress" in header and "status" in header
    assert newest.split()[:3] == [str(second), "train", "CANCELLED"]
    assert oldest.split()[:3] == [str(first), "train", "RUNNING"]
    assert "5/20   25% 2.5/s ETA 00:06 loss 0.500" in oldest


def test_progress_cell_shows_rate_only_while_live():
    figures = {"step": 10, "total": 40, "steps_per_s": 4.0, "eta_s": 7.5, "test_seq_acc": 0.5}
    assert progress_cell(figures) == "10/40   25% 4.0/s ETA 00:07 acc 0.500"
    assert progress_cell(figures, live=False) == "10/40   25% acc 0.500"
    assert progress_cell({}) == ""


def test_worker_command_exists():
    result = cli("worker", "--help")
    assert result.returncode == 0 and "--queue" in result.stdout
