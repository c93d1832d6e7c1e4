"""Helpers for the job tests: tiny specs, records, polling, and worker processes with accounting.

``Workers`` starts ``python -m worker.local`` subprocesses, each the leader of its own process group,
with short leases (3 s, heartbeat 1 s) and one torch thread. Every process they start carries a tag
in its environment, so every one of them can be found, even an orphan, and none may be left behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL

from core.db import crud, jobs
from core.db.models import Run
from core.db.session import make_engine, session_scope, upgrade
from core.settings import Settings
from core.specs.run import RunSpec

ROOT = Path(__file__).resolve().parents[2]
TAG = "CIRCUITBOARD_TEST_TAG"
LEASE, HEARTBEAT = 3, 1
WORKER_ENV = {"CIRCUITBOARD_LEASE_SECONDS": str(LEASE), "CIRCUITBOARD_HEARTBEAT_SECONDS": str(HEARTBEAT),
              "CIRCUITBOARD_STOP_GRACE_SECONDS": "5", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Tiny: ~1.5 s to start a child (torch import), then ~30 steps/s.
FAST = {"problem": "parity", "max_len": 3, "n_train_per_len": 16, "n_test_per_len": 8, "probe_per_len": 2,
        "d_model": 16, "batch_size": 8, "steps": 20, "eval_every": 10, "snapshot_every": 10, "checkpoint_every": 5}
# Slower on purpose (evaluation and a snapshot every step), so a test can act mid-run.
SLOW = {**FAST, "steps": 30, "eval_every": 1, "snapshot_every": 1, "checkpoint_every": 5}


def migrated(url: URL) -> Engine:
    upgrade(url)
    return make_engine(url)


# ---------------------------------------------------------------- records


def new_job(engine: Engine, spec: dict[str, Any] | None = None, *, validate: bool = True, **overrides) -> tuple[int, int]:
    """A run of ``spec`` (FAST by default) with its train job QUEUED: (run id, job id)."""
    flat = {**(spec or FAST), **overrides}
    if validate:
        flat = RunSpec.from_flat(flat).to_flat()
    with session_scope(engine) as session:
        run = crud.create_run(session, spec=flat, total_steps=flat.get("steps", 0))
        return run.id, jobs.submit_train_job(session, run_id=run.id).id


def job_row(engine: Engine, job_id: int):
    """The job as it is now, detached (a read-only scope rolls back, which would expire it)."""
    with session_scope(engine, readonly=True) as session:
        job = jobs.get_job(session, job_id=job_id)
        session.expunge(job)
        return job


def run_row(engine: Engine, run_id: int):
    with session_scope(engine, readonly=True) as session:
        run = crud.get_run(session, run_id=run_id)
        session.expunge(run)
        return run


def events(job, name: str | None = None) -> list[dict]:
    history = (job.payload or {}).get("history", [])
    return [event for event in history if name is None or event["event"] == name]


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def wait_status(engine: Engine, job_id: int, *statuses: str, timeout: float = 30) -> Any:
    return wait_for(lambda: (job := job_row(engine, job_id)).status in statuses and job,
                    timeout=timeout, interval=0.1, what=f"job {job_id} to become {'/'.join(statuses)}")


class StatusWatch(threading.Thread):
    """Reads a run's status over and over, from ``start()`` until ``stop()`` (and once more then).

    ``seen`` is the statuses it found in order, repeats collapsed. Reads pass SQLite's write lock (WAL).
    """

    def __init__(self, engine: Engine, run_id: int) -> None:
        super().__init__(daemon=True)
        self.engine, self.run_id = engine, run_id
        self.seen: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            last = self.done.is_set()
            status = run_row(self.engine, self.run_id).status
            if not self.seen or self.seen[-1] != status:
                self.seen.append(status)
            if last:
                return
            self.done.wait(0.01)

    def stop(self) -> list[str]:
        self.done.set()
        self.join()
        return self.seen


# ---------------------------------------------------------------- processes


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes (zombies excluded) whose environment carries ``tag``."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(TAG) == tag:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def training_children(tag: str) -> list[psutil.Process]:
    """The tagged ``worker.child`` processes (the training children of the workers)."""
    children = []
    for process in tagged(tag):
        try:
            if "worker.child" in process.cmdline():
                children.append(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return children


class Workers:
    """Starts local worker subprocesses for one test and accounts for every process they make."""

    def __init__(self, logs: Path) -> None:
        self.tag = uuid.uuid4().hex
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **WORKER_ENV, TAG: self.tag, **extra}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return env

    def start(self, url: URL, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """``python -m worker.local --db URL`` as the leader of a new process group (``env``: extra variables)."""
        command = [sys.executable, "-m", "worker.local", "--db", url.render_as_string(hide_password=False),
                   "--poll", "0.1", *args]
        with open(self.logs / f"worker-{len(self.started)}.log", "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env(**(env or {})), start_new_session=True,
                                       stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def log(self, process: subprocess.Popen) -> str:
        """What the worker has logged so far (for failure messages)."""
        return (self.logs / f"worker-{self.started.index(process)}.log").read_text()

    def signal(self, process: subprocess.Popen, sig: signal.Signals) -> None:
        """Send ``sig`` to the worker's whole process group (its training child has a group of its own)."""
        os.killpg(process.pid, sig)

    def stop(self, process: subprocess.Popen, timeout: float = 15) -> int:
        """SIGTERM, as a service manager would; the worker must exit cleanly by itself."""
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=timeout)

    def leftovers(self) -> list[psutil.Process]:
        return tagged(self.tag)

    def cleanup(self) -> list[str]:
        """Kill what is still running; return descriptions of the processes that were left."""
        for process in self.started:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        deadline = time.monotonic() + 3  # a child killed with its worker may take a moment to go
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = []
        for process in self.leftovers():
            try:
                left.append(f"{process.pid} {' '.join(process.cmdline())}")
                process.kill()
            except psutil.NoSuchProcess:
                continue
        return left


def fingerprint(engine: Engine, run_id: int, job_id: int) -> tuple:
    """Everything a worker may write for a run and its job, to compare before and after."""
    with session_scope(engine, readonly=True) as session:
        job, run = jobs.get_job(session, job_id=job_id), crud.get_run(session, run_id=run_id)
        job_state = (job.status, job.attempt, job.fencing_token, job.worker_id, job.lease_expires_at,
                     job.heartbeat_at, job.progress, job.payload, job.error, job.updated_at)
        run_state = (run.status, run.step, run.error, run.summary, run.started_at, run.finished_at)
        checkpoints = [(step, kind, crud.get_checkpoint(session, run_id=run_id, step=step, kind=kind).sha256)
                       for kind in ("resume", "weights")
                       for step in crud.checkpoint_steps(session, run_id=run_id, kind=kind)]
        metrics = [(key, step, None if value != value else value)  # NaN != NaN; None == None
                   for key, step, value in crud.get_metrics(session, run_id=run_id)]
        return (job_state, run_state, metrics,
                crud.list_snapshot_steps(session, run_id=run_id), checkpoints)


def pause_between_writes(path, groups) -> None:
    """SIGSTOP every process group at a moment none of them holds SQLite's write lock.

    A process frozen inside a write transaction holds SQLite's one write lock, and every other
    writer waits for it until it is resumed (inherent to SQLite; on PostgreSQL only that job's row
    would wait). That is not what the tests that call this are about, so it pauses between writes.
    """
    for _ in range(100):
        for group in groups:
            os.killpg(group, signal.SIGSTOP)
        connection = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # stopped mid-write: let it finish, try again
            for group in groups:
                os.killpg(group, signal.SIGCONT)
            time.sleep(0.03)
        finally:
            connection.close()
    pytest.fail("could not pause the worker between two writes")


# ---------------------------------------------------------------- Celery workers and a Redis of their own

CELERY_ENV = {"CIRCUITBOARD_REPUBLISH_AFTER_SECONDS": "2"}


def start_celery(workers: Workers, url: URL, broker: str, *args: str,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """``circuitboard worker --broker URL`` (a real Celery worker, solo pool) as a process-group leader."""
    command = [sys.executable, "-m", "core.cli", "worker", "--db", url.render_as_string(hide_password=False),
               "--broker", broker, *args]
    with open(workers.logs / f"worker-{len(workers.started)}.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**workers.env(**(env or {})), **CELERY_ENV},
                                   start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    workers.started.append(process)
    return process


@dataclass
class Stack:
    """One deployment under test: its database, settings, and how to start one of its workers."""

    kind: str  # "local" (SQLite, worker.local) or "celery" (PostgreSQL, Redis, a Celery worker)
    url: URL
    engine: Engine
    settings: Settings
    start: Callable[..., subprocess.Popen]  # start(env=None): a worker, with extra environment variables
    ready_line: str  # what its log says once it takes jobs


def started(stack: Stack, workers: Workers, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A worker of ``stack``, once it is ready for jobs."""
    worker = stack.start(env=env)
    wait_for(lambda: stack.ready_line in workers.log(worker), timeout=30, what=f"the {stack.kind} worker to start")
    return worker


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` on a free port, without persistence: killing it loses every message.

    Never the shared Redis on 6379: other people's tests use it, and this one gets killed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), timeout=10, what="redis-server to accept connections")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def foreground_train(url: str, spec: dict[str, Any], *args: str) -> subprocess.Popen:
    """``circuitboard train --preset fast-parity`` with ``spec`` as ``--set``s, one thread, on ``url``: a real
    foreground run (stdout and stderr piped), in an environment with no CIRCUITBOARD_* of the caller's."""
    sets = [item for key, value in spec.items() for item in ("--set", f"{key}={value}")]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CIRCUITBOARD_")}, **WORKER_ENV}
    return subprocess.Popen([sys.executable, "-m", "core.cli", "train", "--preset", "fast-parity", *sets,
                             "--threads", "1", "--db", url, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def only_run(engine: Engine) -> Run | None:
    """The database's one run, detached (None before the CLI has made it)."""
    with session_scope(engine, readonly=True) as session:
        run = session.scalars(select(Run)).one_or_none()
        if run is not None:
            session.expunge(run)
        return run
