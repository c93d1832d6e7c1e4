"""``circuitboard serve``: migrate, then serve the web app with uvicorn, plus a local worker.

    circuitboard serve [--host 127.0.0.1] [--port 8000] [--no-worker] [--workers N] [--local-workers N]

``--local-workers N`` starts N embedded workers, so N jobs (or packs) train at once, each process with
its share of the cores as torch threads (``CIRCUITBOARD_TRAIN_THREADS`` overrides it): on a small CPU,
small models train faster as two one-thread processes than as one two-thread process
(docs/packed.md, "Several jobs at once").
"""

import importlib
import os
import secrets
import signal
import subprocess
import sys

from core.settings import environ_of, settings_with


def register(add) -> None:
    p = add("serve", cmd_serve, "serve the web app, with a local worker (unless --no-worker or a broker is set)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-worker", action="store_true", help="start no local worker (workers run elsewhere)")
    p.add_argument("--workers", type=int, default=1, help="web server processes (uvicorn workers; one per core)")
    p.add_argument("--local-workers", type=int, help="embedded workers: jobs trained at once (default: "
                   "CIRCUITBOARD_LOCAL_WORKERS or 1), each with its share of the cores")


def cmd_serve(args) -> int:
    """Migrate, then serve the web app with uvicorn, plus a local worker unless told otherwise."""
    import uvicorn

    from core.db.session import upgrade

    settings = settings_with(database_url=args.db, local_workers=args.local_workers)
    if settings.local_workers > 1 and not settings.train_threads:
        settings = settings_with(database_url=args.db, local_workers=settings.local_workers,
                                 train_threads=max(1, (os.cpu_count() or 1) // settings.local_workers))
    if args.workers > 1 and not settings.secret_key:
        # Each uvicorn worker process builds its own app; without a shared key each would draw its own
        # random one, and a CSRF token or login cookie signed by one process would fail in the others.
        settings = settings_with(database_url=args.db, secret_key=secrets.token_urlsafe(32))
    upgrade(settings.database_url)
    workers = []
    if not args.no_worker and not settings.broker_url:
        workers = [subprocess.Popen([sys.executable, "-m", "worker.local", "--db", settings.database_url,
                                     "--parent-pid", str(os.getpid())], env={**os.environ, **environ_of(settings)})
                   for _ in range(settings.local_workers)]
    # uvicorn handles SIGTERM/SIGINT itself, then re-raises them once it has stopped: these handlers
    # receive that, so the worker below is stopped before this process exits.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if args.workers > 1:
        # uvicorn's worker processes import the app factory themselves and read their settings from
        # the environment they inherit: the one way to hand them these settings.
        os.environ.update(environ_of(settings))
        app, factory = "server.main:create_app", True
    else:  # one process: the app is built here, from these settings (core loads the server by name)
        app, factory = importlib.import_module("server.main").create_app(settings), False
    try:
        uvicorn.run(app, factory=factory, host=args.host, port=args.port,
                    workers=max(1, args.workers), log_level="info", timeout_graceful_shutdown=5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)  # all at once: each checkpoints its job within the grace
        for worker in workers:
            stop_process(worker, grace=settings.stop_grace_seconds + 10)
    return 0


def stop_process(process: subprocess.Popen, *, grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
