"""``circuitboard worker``: a worker in the foreground, Celery when a broker URL is set, else local.

    circuitboard worker [--broker URL] [--queue cpu|gpu] [--device cpu|cuda:N]
"""

import importlib
import os

from core.cli.common import bad_input
from core.names import queue_for_device
from core.settings import environ_of, get_settings, settings_with
from core.specs.errors import SpecError
from core.specs.run import check_device


def register(add) -> None:
    p = add("worker", cmd_worker, "run a worker: Celery with a broker URL, else a local worker on the database")
    p.add_argument("--broker", help="Celery broker URL, e.g. redis://host:6379/0 (default: CIRCUITBOARD_BROKER_URL)")
    p.add_argument("--queue", action="append", choices=("cpu", "gpu"),
                   help="queue to serve (repeatable; default: the device's, cpu or gpu)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N: where jobs whose spec names no device run")


def cmd_worker(args) -> int:
    """A worker in the foreground: Celery when a broker URL is set, else the embedded local worker.

    Core never imports the worker package; it is loaded by name (``importlib``).
    """
    try:
        args.device and check_device(args.device)
    except ValueError as exc:
        return bad_input("worker", SpecError([("device", f"{exc} (got {args.device!r})")]))
    queues = args.queue or [queue_for_device(args.device)]
    broker = args.broker or settings_with().broker_url
    if not broker:
        argv = [*(["--db", args.db] if args.db else []), *(f"--queue={queue}" for queue in queues),
                *(["--device", args.device] if args.device else [])]
        return importlib.import_module("worker.local").main(argv)
    return celery_worker(broker=broker, db=args.db, queues=queues, device=args.device or "cpu")


def celery_worker(*, broker: str, db: str | None, queues: list[str], device: str) -> int:
    """Run one Celery worker (solo pool: one job at a time, for one device) until SIGTERM."""
    import logging

    from core.db.session import upgrade

    settings = settings_with(broker_url=broker, database_url=db)
    upgrade(settings.database_url)
    # The Celery app (worker.celery_app) and the job processes it starts read their settings, and
    # worker.child its default device, from the environment: the one way to hand them these.
    os.environ.update(environ_of(settings), CIRCUITBOARD_WORKER_DEVICE=device)
    get_settings.cache_clear()  # this process read its settings before: read them again from there
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = importlib.import_module("worker.celery_app").app
    name = f"{'+'.join(queues)}-{device.replace(':', '')}-{os.getpid()}@%h"
    try:
        app.worker_main(["worker", "--queues", ",".join(queues), "--pool", "solo", "--concurrency", "1",
                         "--hostname", name, "--loglevel", "INFO", "--without-gossip", "--without-mingle"])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0
