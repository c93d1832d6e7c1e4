"""A SQLite file locked past the busy timeout mid-run: never a false FAILED, nothing lost (issue 16, item 2).

Another process takes the database file with BEGIN EXCLUSIVE while a run trains and holds it for
longer than the busy timeout (shortened to 1 s through the URL's ``timeout``), until the training
child's write has given up and the child has exited. The child must not write FAILED (the error is
the database's, not the run's): it exits as a database failure, its supervisor waits for the lock to
hand the attempt back, with the error in one line as the reason, and the job resumes from its last
checkpoint once the file is free. The lease (8 s) is longer than the lock is held, as in production
(60 s lease, 30 s busy timeout).
"""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy.engine import make_url

from core.db import crud
from core.db.session import session_scope
from tests.worker.support import (
    SLOW,
    StatusWatch,
    events,
    job_row,
    migrated,
    new_job,
    run_row,
    training_children,
    wait_for,
    wait_status,
)

HOLD = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # until the test says so
connection.execute("COMMIT")
"""


def test_a_database_locked_past_the_busy_timeout_never_fails_the_run_and_loses_nothing(tmp_path, workers):
    path = tmp_path / "circuitboard.db"
    url = make_url(f"sqlite:///{path}?timeout=1")
    engine = migrated(url)
    run_id, job_id = new_job(engine, SLOW)
    worker = workers.start(url, env={"CIRCUITBOARD_LEASE_SECONDS": "8"})
    wait_for(lambda: run_row(engine, run_id).step >= SLOW["checkpoint_every"] + 1, timeout=60, interval=0.05,
             what="training past its first resume checkpoint")
    [child] = training_children(workers.tag)
    watch = StatusWatch(engine, run_id)
    watch.start()

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        wait_for(lambda: not child.is_running() or child.status() == "zombie", timeout=30, interval=0.05,
                 what="the training child to give up on the locked file")
        assert job_row(engine, job_id).status == "RUNNING"  # its supervisor waits for the lock to say so
    finally:
        holder.communicate("release\n", timeout=30)
    assert holder.returncode == 0

    job = wait_status(engine, job_id, "SUCCEEDED", "FAILED", timeout=60)
    watch.stop()
    assert job.status == "SUCCEEDED", (job.error, workers.log(worker)[-3000:])
    assert "FAILED" not in watch.seen, watch.seen
    assert watch.seen[0] == "RUNNING" and watch.seen[-1] == "SUCCEEDED"

    assert [e["event"] for e in events(job)] == ["claimed", "lost", "claimed", "finished"], job.payload
    [lost] = events(job, "lost")
    assert lost["reason"] == "database failure: (sqlite3.OperationalError) database is locked", lost
    assert lost["became"] == "QUEUED" and job.attempt == 2
    resumed_from = events(job, "claimed")[1]["from_step"]
    assert 0 < resumed_from <= lost["at_step"]  # from its last checkpoint, not from scratch

    run = run_row(engine, run_id)
    assert (run.status, run.step, run.error) == ("SUCCEEDED", SLOW["steps"], None)
    with session_scope(engine, readonly=True) as session:
        rows = crud.get_metrics(session, run_id=run_id)
        assert crud.list_snapshot_steps(session, run_id=run_id) == list(range(SLOW["steps"] + 1))
    assert sorted(step for key, step, _ in rows if key == "test/seq_acc") == list(range(SLOW["steps"] + 1))
    assert "Background on this error" not in workers.log(worker)
    assert workers.stop(worker) == 0
    engine.dispose()
