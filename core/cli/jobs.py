"""``circuitboard jobs``: list jobs, newest first, with their progress.

    circuitboard jobs [--status S] [--limit N]
"""

import time

from core.cli.common import open_engine


def register(add) -> None:
    p = add("jobs", cmd_jobs, "list jobs, newest first, with their progress")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=50)


def cmd_jobs(args) -> int:
    from core.db import jobs
    from core.db.session import session_scope

    engine = open_engine(args.db)
    with session_scope(engine, readonly=True) as session:
        rows = jobs.list_jobs(session, status=args.status, limit=args.limit)
        print(f"{'id':>5}  {'kind':<9} {'status':<10} {'queue':<5} {'run':>5} {'try':>5}  {'progress':<52} error")
        for job in rows:
            tries = f"{job.attempt}/{job.max_attempts}"
            error = (job.error or "").strip().splitlines()[-1:] or [""]
            print(f"{job.id:>5}  {job.kind:<9} {job.status:<10} {job.queue:<5} {job.run_id or '-':>5} {tries:>5}"
                  f"  {progress_cell(job.progress or {}, live=job.status == 'RUNNING'):<52} {error[0][:80]}")
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
