"""The embedded dispatcher: a worker that takes QUEUED jobs straight from the database.

    python -m worker.local [--db URL] [--queue cpu] [--device cpu|cuda:N] [--poll 0.5]
    circuitboard worker [--db URL] [--queue cpu|gpu] [--device cpu|cuda:N]   (the same, through the CLI)

No broker: the jobs table is the queue. In a loop it

1. reaps: RUNNING jobs whose lease expired (their worker died) are re-queued or failed;
2. claims the oldest QUEUED job of its queues (``jobs.claim_next``), if any;
3. runs it through ``worker.execute.run_claimed``, the same path a Celery task takes.

Idle polls only read, so an idle worker never takes SQLite's write lock. Several local workers may
share one database: claims are atomic, and any of them reaps for all. SIGTERM or SIGINT stops it
cleanly: a running job gets SIGTERM, checkpoints, and is released back to the queue.
``--device`` is where jobs whose spec names no device train (the queue follows it unless given);
``--parent-pid`` (how ``circuitboard serve`` starts it) makes it stop when that process is gone.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.db import jobs
from core.db.session import make_engine, session_scope, upgrade
from core.names import QUEUES, queue_for_device
from core.settings import Settings, get_settings
from core.specs.run import check_device
from worker.child import WORKER_DEVICE_ENV
from worker.execute import DEFERRED, run_claimed

log = logging.getLogger("worker.local")

REAP_EVERY_SECONDS = 1.0  # a lost job is re-queued within lease + this (+ one poll)


def serve(engine: Engine, *, settings: Settings, queues: Sequence[str], worker_id: str,
          stop: threading.Event, poll_seconds: float = 0.5) -> None:
    """Reap, claim and run jobs until ``stop`` is set."""
    next_reap = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_reap:
                _reap(engine)
                next_reap = time.monotonic() + REAP_EVERY_SECONDS
            claim = _claim_next(engine, queues=queues, worker_id=worker_id, settings=settings)
            if claim is not None:
                if run_claimed(claim, engine=engine, settings=settings, should_stop=stop.is_set) != DEFERRED:
                    continue  # a deferred job waits for its parent: look again after a poll
        except SQLAlchemyError as exc:  # the database is away: wait and try again; leases protect the jobs
            log.warning("database error: %s", str(exc).splitlines()[0])
        except Exception:  # noqa: BLE001 - a worker outlives one job's surprise; the reaper sees to that job
            log.exception("unexpected error")
        stop.wait(poll_seconds)


def _reap(engine: Engine) -> None:
    with session_scope(engine, readonly=True) as session:
        if not jobs.has_expired(session):
            return
    with session_scope(engine) as session:
        for reaped in jobs.reap(session):
            log.warning("job %s: %s -> %s", reaped.job_id, reaped.reason, reaped.status)


def _claim_next(engine: Engine, *, queues: Sequence[str], worker_id: str, settings: Settings) -> jobs.Claim | None:
    with session_scope(engine, readonly=True) as session:
        if not jobs.has_queued(session, queues=queues):
            return None
    with session_scope(engine) as session:
        return jobs.claim_next(session, queues=queues, worker_id=worker_id, lease_seconds=settings.lease_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker.local", description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: CIRCUITBOARD_DATABASE_URL)")
    parser.add_argument("--queue", action="append", choices=QUEUES,
                        help="queue to take jobs from (repeatable; default: the device's, cpu or gpu)")
    parser.add_argument("--device", type=_device, help="device for jobs whose spec names none: cpu (default), cuda, cuda:N")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks at an empty queue")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    settings = get_settings()
    url = args.db or settings.database_url
    upgrade(url)
    engine = make_engine(url)
    queues = args.queue or [queue_for_device(args.device)]
    if args.device:
        os.environ[WORKER_DEVICE_ENV] = args.device  # the training children inherit it
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    stop = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        log.info("%s: finishing up", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.parent_pid:
        threading.Thread(target=_follow, args=(args.parent_pid, stop), name="parent-watch", daemon=True).start()
    log.info("worker %s on queues %s of %s", worker_id, ",".join(queues),
             engine.url.render_as_string(hide_password=True))
    try:
        serve(engine, settings=settings, queues=queues, worker_id=worker_id, stop=stop, poll_seconds=args.poll)
    finally:
        engine.dispose()
    log.info("worker %s stopped", worker_id)
    return 0


def _device(text: str) -> str:
    try:
        return check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None


def _follow(parent_pid: int, stop: threading.Event) -> None:
    """Stop the worker (gracefully) once the process that started it is gone."""
    while not stop.wait(1.0):
        if os.getppid() != parent_pid:
            log.info("parent %s is gone: finishing up", parent_pid)
            stop.set()


if __name__ == "__main__":
    sys.exit(main())
