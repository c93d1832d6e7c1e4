"""The ``circuitboard`` command line.

    circuitboard train --preset fast-polynomial [--set key=value ...] [--db URL]
    circuitboard runs [--status S] [--problem P] [--limit N]
    circuitboard show RUN [--json]
    circuitboard worker [--queue cpu|gpu]
    circuitboard jobs [--status S] [--limit N]
    circuitboard migrate

Every command takes ``--db URL`` (default: the ``CIRCUITBOARD_DATABASE_URL`` setting, else a SQLite
file ``circuitboard.db`` in the working directory). Bad input (an unknown preset or key, a value
out of bounds) exits with status 2 and one line per problem, before anything is allocated or written.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

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
    from core.summary import summarize

    with session_scope(engine) as session:
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            print(f"circuitboard show: no run {run_id}", file=sys.stderr)
            return 1
        summary = run.summary or summarize(crud.get_metrics(session, run_id=run_id))
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
        emerged = f"from step {info['emerged_step']:,}" if info["emerged_step"] is not None else "not yet emerged"
        print(f"{role}: {info['label']} (theory: layer {info['expected_layer']}) {scores}; {emerged}")
    return 0


def cmd_show(args) -> int:
    return show(_engine(args.db), args.run, as_json=args.json)


def cmd_worker(args) -> int:
    """Run the embedded local worker in the foreground (``worker.local``; core never imports worker)."""
    argv = [*(["--db", args.db] if args.db else []), *(f"--queue={queue}" for queue in args.queue or [])]
    return importlib.import_module("worker.local").main(argv)


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
    p = add("worker", cmd_worker, "run a local worker: take queued jobs from the database and run them")
    p.add_argument("--queue", action="append", choices=("cpu", "gpu"), help="queue to serve (repeatable; default cpu)")
    p = add("jobs", cmd_jobs, "list jobs, newest first, with their progress")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=50)
    add("migrate", cmd_migrate, "create or upgrade the database schema")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
