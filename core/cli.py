"""The ``circuitboard`` command line.

    circuitboard train --preset fast-polynomial [--set key=value ...] [--db URL]
    circuitboard runs [--status S] [--problem P] [--limit N]
    circuitboard show RUN [--json]
    circuitboard serve [--host 127.0.0.1] [--port 8000] [--no-worker]
    circuitboard worker [--broker URL] [--queue cpu|gpu] [--device cpu|cuda:N]
    circuitboard sweep --preset P --axis d_model=32,64 [--axis max_len=4,8] [--seeds 0,1] [--set key=value ...]
    circuitboard jobs [--status S] [--limit N]
    circuitboard migrate
    circuitboard intervene RUN --kind ablate|edge|pattern|activation_patch|probe [--steps S|last|all]
    circuitboard export RUN --step S --format tl|safetensors --out DIR
    circuitboard import-eval eval.csv --preset P

Every command takes ``--db URL`` (default: the ``CIRCUITBOARD_DATABASE_URL`` setting, else a SQLite
file ``circuitboard.db`` in the working directory). Bad input (an unknown preset or key, a value
out of bounds) exits with status 2 and one line per problem, before anything is allocated or written.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time

from core.names import DEVICE
from core.settings import get_settings
from core.specs import SpecError, apply_overrides, parse_set

EXIT_BAD_INPUT = 2


def _engine(url: str | None):
    from core.db.session import make_engine, upgrade

    url = url or get_settings().database_url
    upgrade(url)
    return make_engine(url)


class ProgressLine:
    """One status line on stderr, redrawn in place: step, steps/s, loss, accuracy, peakiness, ETA."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, p) -> None:
        eta = (p.total - p.step) / p.steps_per_s if p.steps_per_s > 0 else float("nan")
        parts = [f"step {p.step:,}/{p.total:,}", f"{p.steps_per_s:5.1f} steps/s", f"loss {p.loss:.4f}"]
        if p.test_seq_acc is not None:
            parts.append(f"test acc {p.test_seq_acc:.3f}")
        if p.peaky:
            parts.append("peaky " + " ".join(f"{role} {value:.2f}" for role, value in sorted(p.peaky.items())))
        parts.append(f"ETA {time.strftime('%M:%S', time.gmtime(eta)) if eta == eta else '?'}")
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r" + line.ljust(120)[:160])
        elif p.step == p.total or p.step % 100 == 0 or p.test_seq_acc is not None:
            self.stream.write(line + "\n")
        self.stream.flush()


def cmd_train(args) -> int:
    from core.presets import get_preset

    try:
        spec = apply_overrides(get_preset(args.preset), parse_set(args.set or []))
    except SpecError as exc:
        print(f"circuitboard train: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from core.db import crud
    from core.db.session import session_scope
    from core.recording import execute_training

    engine = _engine(args.db)
    with session_scope(engine) as session:
        parent = spec.train.init_source
        if parent and parent[1] not in crud.checkpoint_steps(session, run_id=parent[0]):
            known = crud.checkpoint_steps(session, run_id=parent[0])
            print(f"circuitboard train: init_from: run {parent[0]} has no checkpoint at step {parent[1]}"
                  f" (recorded steps: {', '.join(map(str, known)) or 'none'})", file=sys.stderr)
            return EXIT_BAD_INPUT
        run = crud.create_run(session, spec=spec.to_flat(), name=args.name, preset=args.preset,
                              parent_run_id=parent[0] if parent else None,
                              parent_step=parent[1] if parent else None)
        run_id = run.id
    print(f"run {run_id}: {args.preset} -> {engine.url.render_as_string(hide_password=True)}", file=sys.stderr)
    started = time.perf_counter()
    try:
        status = execute_training(engine, run_id, on_progress=ProgressLine())
    except KeyboardInterrupt:
        print(f"\nrun {run_id} interrupted; its last checkpoint is in the database", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\nrun {run_id} FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"\nrun {run_id} {status} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return show(engine, run_id, as_json=False)


def cmd_runs(args) -> int:
    from core.db import crud
    from core.db.session import session_scope

    engine = _engine(args.db)
    with session_scope(engine) as session:
        runs = crud.list_runs(session, status=args.status, problem=args.problem, limit=args.limit)
        print(f"{'id':>5}  {'status':<10} {'problem':<20} {'preset':<18} {'step':>14}  {'test acc':>8}  name")
        for run in runs:
            acc = ((run.summary or {}).get("accuracy", {}).get("test", {}) or {}).get("seq_acc")
            progress = f"{run.step:,}/{run.total_steps:,}"
            print(f"{run.id:>5}  {run.status:<10} {run.spec.get('problem', ''):<20} {run.preset or '-':<18} "
                  f"{progress:>14}  {'' if acc is None else f'{acc:.3f}':>8}  {run.name or ''}")
    return 0


def show(engine, run_id: int, *, as_json: bool) -> int:
    from core.db import crud
    from core.db.session import session_scope
    from core.summary import run_summary

    with session_scope(engine) as session:
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            print(f"circuitboard show: no run {run_id}", file=sys.stderr)
            return 1
        summary = run_summary(session, run)
        record = {"id": run.id, "name": run.name, "status": run.status, "preset": run.preset,
                  "step": run.step, "total_steps": run.total_steps, "error": run.error,
                  "spec": run.spec, "summary": summary}
    if as_json:
        print(json.dumps(record, indent=2, default=str))
        return 0
    print(f"run {record['id']} {record['name'] or ''} [{record['status']}] {record['preset'] or ''}"
          f" step {record['step']:,}/{record['total_steps']:,}")
    if record["error"]:
        print(f"error: {record['error'].splitlines()[0]}")
    print(f"verdict: {summary.get('verdict') or '-'}")
    for split in ("train", "test"):
        acc = summary.get("accuracy", {}).get(split, {})
        if acc.get("seq_acc") is None:
            continue
        by_len = " ".join(f"{n}:{v:.2f}" for n, v in acc["seq_acc_by_length"].items())
        print(f"{split} seq_acc {acc['seq_acc']:.3f} (L=4..max) at step {acc['step']:,}; by length {by_len}")
        for extra in ("gen_acc", "gen_answer_acc", "seq_acc_heldout"):
            if extra in acc:
                print(f"  {extra} {acc[extra]:.3f}")
    for role, info in summary.get("heads", {}).items():
        scores = " ".join(f"{k} {v:.3f}" for k, v in info["scores"].items() if v is not None)
        emerged = (f"emerged at step {info['emerged_step']:,}" if info["emerged_step"] is not None
                   else "never reached the bar" if summary.get("finished") else "not at the bar yet")
        emerged += f"; {info.get('grade', '?')} against the {info.get('bar', 0.9):.2f} bar"
        print(f"{role}: {info['label']} (theory: layer {info['expected_layer']}) {scores}; {emerged}")
        if "stronger_elsewhere" in info:
            other = info["stronger_elsewhere"]
            print(f"  outside layer {info['expected_layer']}: {other['label']} peaky_thres {other['peaky_thres']:.3f}")
    return 0


def cmd_show(args) -> int:
    return show(_engine(args.db), args.run, as_json=args.json)


def cmd_worker(args) -> int:
    """A worker in the foreground: Celery when a broker URL is set, else the embedded local worker.

    Core never imports the worker package; it is loaded by name (``importlib``).
    """
    if args.device and not DEVICE.fullmatch(args.device):
        print(f"circuitboard worker: device: must be cpu, cuda or cuda:N (got {args.device!r})", file=sys.stderr)
        return EXIT_BAD_INPUT
    from core.names import queue_for_device

    queues = args.queue or [queue_for_device(args.device)]
    broker = args.broker or get_settings().broker_url
    if not broker:
        argv = [*(["--db", args.db] if args.db else []), *(f"--queue={queue}" for queue in queues),
                *(["--device", args.device] if args.device else [])]
        return importlib.import_module("worker.local").main(argv)
    return celery_worker(broker=broker, db=args.db, queues=queues, device=args.device or "cpu")


def celery_worker(*, broker: str, db: str | None, queues: list[str], device: str) -> int:
    """Run one Celery worker (solo pool: one job at a time, for one device) until SIGTERM."""
    import logging

    from core.db.session import upgrade

    os.environ["CIRCUITBOARD_BROKER_URL"] = broker
    if db:
        os.environ["CIRCUITBOARD_DATABASE_URL"] = db
    os.environ["CIRCUITBOARD_WORKER_DEVICE"] = device  # worker.child reads it; its children inherit it
    get_settings.cache_clear()
    upgrade(get_settings().database_url)
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


def cmd_serve(args) -> int:
    """Migrate, then serve the web app with uvicorn, plus a local worker unless told otherwise."""
    import uvicorn

    from core.db.session import upgrade

    if args.db:
        os.environ["CIRCUITBOARD_DATABASE_URL"] = args.db
        get_settings.cache_clear()
    settings = get_settings()
    if args.workers > 1 and not settings.secret_key:
        # Each uvicorn worker process builds its own app; without a shared key each would draw its own
        # random one, and a CSRF token or login cookie signed by one process would fail in the others.
        os.environ["CIRCUITBOARD_SECRET_KEY"] = secrets.token_urlsafe(32)
        get_settings.cache_clear()
        settings = get_settings()
    upgrade(settings.database_url)
    worker = None
    if not args.no_worker and not settings.broker_url:
        worker = subprocess.Popen([sys.executable, "-m", "worker.local", "--db", settings.database_url,
                                   "--parent-pid", str(os.getpid())])
    # uvicorn handles SIGTERM/SIGINT itself, then re-raises them once it has stopped: these handlers
    # receive that, so the worker below is stopped before this process exits.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        uvicorn.run("server.main:create_app", factory=True, host=args.host, port=args.port,
                    workers=max(1, args.workers), log_level="info", timeout_graceful_shutdown=5)
    finally:
        if worker is not None:
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


def parse_axis(text: str) -> tuple[str, list[float | int]]:
    """``d_model=32,64`` -> ("d_model", [32, 64]); SpecError on anything else."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise SpecError([(f"axes.{key}" if key else "axes", f"expected KEY=V1,V2,... (got {text!r})")])
    parsed: list[float | int] = []
    for value in values.split(","):
        try:
            parsed.append(int(value) if re.fullmatch(r"\s*-?\d+\s*", value) else float(value))
        except ValueError:
            raise SpecError([(f"axes.{key}", f"values must be numbers (got {value.strip()!r})")]) from None
    return key, parsed


def cmd_sweep(args) -> int:
    from core.specs import SweepSpec

    try:
        axes = dict(parse_axis(item) for item in args.axis or [])
        seeds = None
        if args.seeds is not None:
            try:
                seeds = [int(seed) for seed in args.seeds.split(",")]
            except ValueError:
                raise SpecError([("seeds", f"must be integers separated by commas (got {args.seeds!r})")]) from None
        spec = SweepSpec.parse({"preset": args.preset, "overrides": parse_set(args.set or []),
                                "axes": axes, "seeds": seeds})
    except SpecError as exc:
        print(f"circuitboard sweep: {exc}".replace("\n", "\ncircuitboard sweep: "), file=sys.stderr)
        return EXIT_BAD_INPUT
    from core.db.session import session_scope
    from core.submit import dispatch
    from core.sweeps import create_sweep

    engine = _engine(args.db)
    with session_scope(engine) as session:
        created = create_sweep(session, spec=spec, name=args.name)
    dispatch(get_settings(), [created.job_id])
    print(f"sweep {created.sweep_id}: {len(spec.cells())} cells ({' x '.join(f'{k} {v}' for k, v in spec.stored_axes().items())}); "
          f"job {created.job_id} expands them into runs when a worker takes it")
    return 0


def progress_cell(progress: dict, *, live: bool = True) -> str:
    """``12/40  30% 24.1/s ETA 00:01 loss 0.412 acc 0.875`` from a job's figures (rate and ETA only when live)."""
    step, total = progress.get("step"), progress.get("total")
    if step is None or not total:
        return ""
    parts = [f"{step:,}/{total:,} {100 * step / total:4.0f}%"]
    if live and progress.get("steps_per_s") and step < total:
        parts.append(f"{progress['steps_per_s']:.1f}/s")
        if progress.get("eta_s") is not None:
            parts.append(f"ETA {time.strftime('%H:%M:%S', time.gmtime(progress['eta_s'])).removeprefix('00:')}")
    if progress.get("loss") is not None:
        parts.append(f"loss {progress['loss']:.3f}")
    if progress.get("test_seq_acc") is not None:
        parts.append(f"acc {progress['test_seq_acc']:.3f}")
    return " ".join(parts)


def cmd_jobs(args) -> int:
    from core.db import jobs
    from core.db.session import session_scope

    engine = _engine(args.db)
    with session_scope(engine, readonly=True) as session:
        rows = jobs.list_jobs(session, status=args.status, limit=args.limit)
        print(f"{'id':>5}  {'kind':<9} {'status':<10} {'queue':<5} {'run':>5} {'try':>5}  {'progress':<52} error")
        for job in rows:
            tries = f"{job.attempt}/{job.max_attempts}"
            error = (job.error or "").strip().splitlines()[-1:] or [""]
            print(f"{job.id:>5}  {job.kind:<9} {job.status:<10} {job.queue:<5} {job.run_id or '-':>5} {tries:>5}"
                  f"  {progress_cell(job.progress or {}, live=job.status == 'RUNNING'):<52} {error[0][:80]}")
    return 0


def cmd_migrate(args) -> int:
    _engine(args.db)
    print("database at head", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitboard", description="Watch attention circuits form, and test them.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, fn, help):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--db", help="database URL (default: CIRCUITBOARD_DATABASE_URL or sqlite:///circuitboard.db)")
        p.set_defaults(fn=fn)
        return p

    p = add("train", cmd_train, "train a run in the foreground and record it")
    p.add_argument("--preset", required=True, help="e.g. fast-polynomial, paper-polynomial")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (repeatable)")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("--status")
    p.add_argument("--problem")
    p.add_argument("--limit", type=int, default=50)
    p = add("show", cmd_show, "print a run's summary")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p = add("serve", cmd_serve, "serve the web app, with a local worker (unless --no-worker or a broker is set)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-worker", action="store_true", help="start no local worker (workers run elsewhere)")
    p.add_argument("--workers", type=int, default=1, help="web server processes (uvicorn workers; one per core)")
    p = add("worker", cmd_worker, "run a worker: Celery with a broker URL, else a local worker on the database")
    p.add_argument("--broker", help="Celery broker URL, e.g. redis://host:6379/0 (default: CIRCUITBOARD_BROKER_URL)")
    p.add_argument("--queue", action="append", choices=("cpu", "gpu"),
                   help="queue to serve (repeatable; default: the device's, cpu or gpu)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N: where jobs whose spec names no device run")
    p = add("sweep", cmd_sweep, "queue a grid of runs: a preset crossed with up to two numeric axes and seeds")
    p.add_argument("--preset", required=True, help="e.g. fast-parity")
    p.add_argument("--axis", action="append", metavar="KEY=V1,V2", help="a numeric spec key and its values (at most 2)")
    p.add_argument("--seeds", metavar="S1,S2", help="seeds, crossed with the axes")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a base spec key (repeatable)")
    p.add_argument("--name", help="a name for the sweep")
    p = add("jobs", cmd_jobs, "list jobs, newest first, with their progress")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=50)
    add("migrate", cmd_migrate, "create or upgrade the database schema")
    from core.causal.cli import register  # intervene, export, import-eval (torch only when they run)

    register(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `circuitboard jobs | head` closed the pipe: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
