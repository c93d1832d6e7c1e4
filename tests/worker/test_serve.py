"""``circuitboard serve``: the web app and its embedded local worker, started and stopped together.

One real ``circuitboard serve`` process on a free port with a SQLite file: /healthz answers, a run
submitted to the database (``core.submit.submit_run``, no broker) is picked up by the embedded
worker within 2 s (the queue latency, measured submit -> RUNNING) and SUCCEEDS; SIGTERM stops the
server and its worker, and no process is left (psutil, through the ``workers`` fixture's tag).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from sqlalchemy.engine import make_url

from core.db.session import session_scope
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.worker.support import FAST, ROOT, SLOW, free_port, job_row, migrated, training_children, wait_for, wait_status


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).json() == {"ok": True}
    except (httpx.HTTPError, ValueError):
        return False


def serve(tmp_path, workers, *args: str):
    """A real ``circuitboard serve`` on a free port over a fresh SQLite file, once its workers poll."""
    url = make_url(f"sqlite:///{tmp_path / 'serve.db'}")
    port = free_port()
    command = [sys.executable, "-m", "core.cli", "serve", "--port", str(port), "--db",
               url.render_as_string(hide_password=False), *args]
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=workers.env(), start_new_session=True,
                                  stdout=log, stderr=subprocess.STDOUT)
    workers.started.append(server)  # so the fixture kills it and accounts for its children
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(base), timeout=60, interval=0.2, what="circuitboard serve to answer /healthz")
    return server, url


def test_serve_runs_the_app_and_a_worker_and_stops_both(tmp_path, workers):
    server, url = serve(tmp_path, workers)
    wait_for(lambda: "on queues" in (tmp_path / "serve.log").read_text(), timeout=30, what="its worker to poll")

    engine = migrated(url)
    try:
        with session_scope(engine) as session:
            queued = submit_run(session, spec=RunSpec.from_flat(FAST), name="served")
        submitted = time.monotonic()
        wait_status(engine, queued.job_id, "RUNNING", "SUCCEEDED", "FAILED", timeout=10)
        observed = time.monotonic() - submitted  # includes this test's polling (every 0.1 s)
        job = wait_status(engine, queued.job_id, "SUCCEEDED", "FAILED", timeout=60)
        assert job.status == "SUCCEEDED", job.error
        latency = (job.started_at - job.created_at).total_seconds()  # submit -> claimed, by the database's rows
        print(f"queue latency (embedded): {latency:.3f} s by timestamps, {observed:.3f} s observed")
        assert latency < 2.0 and observed < 2.0
    finally:
        engine.dispose()

    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    wait_for(lambda: not workers.leftovers(), timeout=10, what="every process of the server to exit")
    assert job_row(migrated(url), queued.job_id).status == "SUCCEEDED"


def test_local_workers_train_jobs_at_once_each_with_its_share_of_the_cores(tmp_path, workers):
    server, url = serve(tmp_path, workers, "--local-workers", "2")
    wait_for(lambda: (tmp_path / "serve.log").read_text().count("on queues") == 2, timeout=30,
             what="both workers to poll")
    engine = migrated(url)
    try:
        with session_scope(engine) as session:  # pack_size 1: two jobs, never one pack
            queued = [submit_run(session, spec=RunSpec.from_flat({**SLOW, "seed": seed}), name=f"s{seed}", pack_size=1)
                      for seed in (0, 1)]
        wait_for(lambda: all(job_row(engine, q.job_id).status == "RUNNING" for q in queued), timeout=30,
                 what="both jobs to run at once")
        assert len({job_row(engine, q.job_id).worker_id for q in queued}) == 2
        children = training_children(workers.tag)
        assert len(children) == 2
        share = str(max(1, (os.cpu_count() or 1) // 2))
        assert {child.environ().get("CIRCUITBOARD_TRAIN_THREADS") for child in children} == {share}
        for q in queued:
            assert wait_status(engine, q.job_id, "SUCCEEDED", "FAILED", timeout=120).status == "SUCCEEDED"
    finally:
        engine.dispose()
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    wait_for(lambda: not workers.leftovers(), timeout=10, what="every process of the server to exit")
