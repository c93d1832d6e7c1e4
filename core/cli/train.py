"""``circuitboard train``: train a run, or a seed set, in the foreground and record it, with a live progress line.

    circuitboard train --preset fast-polynomial [--set key=value ...] [--name NAME] [--threads N]
    circuitboard train --preset fast-polynomial --seeds 0-7 [--pack-size 8]     # a seed set, trained in packs
    circuitboard train --resume RUN                                             # go on from its last checkpoint

The run is an ordinary job that this process claims and supervises (``worker.foreground``): the
dashboard shows its progress and can cancel it, Ctrl-C ends it CANCELLED after a resume checkpoint
(``--resume`` goes on from there), and a killed terminal leaves it to any worker to resume. With
``--seeds`` the runs are a seed set (a sweep over ``seed`` alone, shown with the sweeps), trained
here in packs of ``--pack-size`` (default: ``core.packing.choose_pack_size``).
"""

import collections
import signal
import sys
import threading
import time

from core.cli.common import EXIT_BAD_INPUT, bad_input, open_engine
from core.specs.errors import SpecError
from core.specs.overrides import apply_overrides, parse_set


def register(add) -> None:
    p = add("train", cmd_train, "train a run (or a seed set) in the foreground and record it")
    p.add_argument("--preset", help="e.g. fast-polynomial, paper-polynomial (required unless --resume)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (repeatable)")
    p.add_argument("--name", help="a name for the run (or the seed set)")
    p.add_argument("--seeds", metavar="0-7", help="train a seed set: one run per seed, e.g. 0-99 or 0,3,5")
    p.add_argument("--pack-size", type=int, help="runs trained together in one pack (default: chosen for the device)")
    p.add_argument("--resume", type=int, metavar="RUN", help="resume a cancelled, failed or interrupted run")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def cmd_train(args) -> int:
    from core.packing import check_pack_size, choose_pack_size, parse_seeds
    from core.presets import get_preset
    from core.settings import get_settings

    try:
        if args.resume is None and not args.preset:
            raise SpecError([("preset", "give --preset (or --resume RUN)")])
        spec = apply_overrides(get_preset(args.preset), parse_set(args.set or [])) if args.preset else None
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
        if args.pack_size is not None:
            check_pack_size(args.pack_size, field="pack-size")
    except SpecError as exc:
        return bad_input("train", exc)
    if args.threads:
        import os

        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)  # the training child's
    settings = get_settings()
    engine = open_engine(args.db)
    try:
        if args.resume is not None:
            from worker.foreground import requeue

            job_ids, run_ids, title = [requeue(engine, args.resume)], [args.resume], f"run {args.resume}: resumed"
        elif seeds is not None:
            job_ids, run_ids, title = submit_seed_set(engine, args, spec, seeds)
        else:
            job_ids, run_ids, title = submit_one(engine, args, spec)
    except SpecError as exc:
        return bad_input("train", exc)
    except (LookupError, ValueError) as exc:
        print(f"circuitboard train: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    size = args.pack_size or (1 if len(job_ids) == 1 else choose_pack_size(spec, setting=settings.pack_size))
    print(f"{title} -> {engine.url.render_as_string(hide_password=True)}", file=sys.stderr)
    return foreground(engine, settings, job_ids, run_ids, size)


def submit_one(engine, args, spec):
    """Queue one run (its init_from checked first); ([job id], [run id], the title line)."""
    from core.db.session import session_scope
    from core.submit import check_init_from, submit_run

    with session_scope(engine) as session:
        check_init_from(session, spec.train.init_from, spec=spec)
        queued = submit_run(session, spec=spec, name=args.name, preset=args.preset, pack_size=1)
    return [queued.job_id], [queued.run_id], f"run {queued.run_id}: {args.preset}"


def submit_seed_set(engine, args, spec, seeds):
    """Queue a seed set (a sweep over ``seed`` alone, expanded here); (job ids, run ids, the title line)."""
    from core.db import jobs
    from core.db.session import session_scope
    from core.specs.sweep import SweepSpec
    from core.submit import check_init_from
    from core.sweeps import create_sweep, expand_sweep

    sweep_spec = SweepSpec.parse({"preset": args.preset, "overrides": parse_set(args.set or []), "seeds": seeds,
                                  "pack_size": args.pack_size})
    with session_scope(engine) as session:
        check_init_from(session, spec.train.init_from, spec=spec)
        created = create_sweep(session, spec=sweep_spec, name=args.name or f"{args.preset} seeds {args.seeds}")
        expander = jobs.claim(session, job_id=created.job_id, worker_id="cli", lease_seconds=60)
        job_ids = expand_sweep(session, sweep_id=created.sweep_id, pack_size=args.pack_size)
        jobs.finish(session, job_id=expander.job_id, token=expander.token, status="SUCCEEDED")  # expanded here
        run_ids = [jobs.get_job(session, job_id=job_id).run_id for job_id in job_ids]
    title = f"seed set {created.sweep_id}: {len(seeds)} runs of {args.preset} (runs {run_ids[0]}-{run_ids[-1]})"
    return job_ids, run_ids, title


def foreground(engine, settings, job_ids, run_ids, pack_size: int) -> int:
    """Train the jobs here with a progress line; Ctrl-C cancels (after a checkpoint), a second one quits."""
    from worker.foreground import train_here

    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\n{signal.Signals(signum).name}: cancelling after a checkpoint (again to quit now)", file=sys.stderr)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    line = LiveLine(engine, job_ids)
    started = time.perf_counter()
    try:
        statuses = train_here(engine, settings, job_ids, pack_size=pack_size, stop=stop)
    except KeyboardInterrupt:
        print(f"\nquit: the runs' leases expire and a worker resumes them from their last checkpoints",
              file=sys.stderr)
        return 130
    finally:
        line.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    seconds = time.perf_counter() - started
    return report(engine, run_ids, [statuses[j] for j in job_ids], seconds)


def report(engine, run_ids, statuses, seconds: float) -> int:
    """What happened: one run's summary (``show``), or a seed set's table; the exit status."""
    from core.cli.show import show

    if len(run_ids) == 1:
        status = statuses[0]
        print(f"\nrun {run_ids[0]} {status} in {seconds:.0f} s", file=sys.stderr)
        if status == "CANCELLED":
            print(f"resume it with: circuitboard train --resume {run_ids[0]} (or retry on its page)", file=sys.stderr)
        show(engine, run_ids[0], as_json=False)
        return 0 if status == "SUCCEEDED" else 130 if status == "CANCELLED" else 1
    from core.db import crud
    from core.db.session import session_scope

    print(f"\n{len(run_ids)} runs in {seconds:.0f} s", file=sys.stderr)
    print(f"{'run':>5}  {'seed':>5}  {'status':<10} {'test acc':>8}  verdict")
    with session_scope(engine, readonly=True) as session:
        for run_id in run_ids:
            run = crud.get_run(session, run_id=run_id)
            acc = ((run.summary or {}).get("accuracy", {}).get("test", {}) or {}).get("seq_acc")
            print(f"{run.id:>5}  {run.spec.get('seed', ''):>5}  {run.status:<10} "
                  f"{'' if acc is None else f'{acc:.3f}':>8}  {(run.summary or {}).get('verdict', '')}")
    if "CANCELLED" in statuses:
        print("resume a cancelled run with: circuitboard train --resume RUN", file=sys.stderr)
    return 0 if all(status == "SUCCEEDED" for status in statuses) else 1


class LiveLine:
    """One status line on stderr, redrawn in place from the jobs' live progress (what the run page shows)."""

    WINDOW_S = 60.0  # the ETA comes from the steps done over this much of the past, as on the run page
    LOG_EVERY_S = 10.0  # not a terminal (a log file): a new line at most this often, or when a status changes

    def __init__(self, engine, job_ids, stream=sys.stderr, every: float = 0.5) -> None:
        self.engine, self.job_ids, self.stream, self.every = engine, list(job_ids), stream, every
        self.tty = stream.isatty()
        self.done = threading.Event()
        self.last, self.last_counts, self.last_written = "", "", 0.0
        self.seen: collections.deque[tuple[float, int]] = collections.deque()  # (monotonic time, steps done)
        self.thread = threading.Thread(target=self._loop, name="progress-line", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=2)

    def _loop(self) -> None:
        while not self.done.wait(self.every):
            try:
                line = self.render()
            except Exception:  # noqa: BLE001 - a failed read only skips one redraw
                continue
            if not line or line == self.last:
                continue
            head, now = line.split(" | ")[0], time.monotonic()
            counts = head if " runs: " in head else ""  # a seed set's statuses; one run's line has none
            if not self.tty and counts == self.last_counts and now - self.last_written < self.LOG_EVERY_S:
                continue
            self.stream.write("\r" + line.ljust(120)[:160] if self.tty else line + "\n")
            self.stream.flush()
            self.last, self.last_counts, self.last_written = line, counts, now

    def render(self) -> str:
        from core.db import jobs
        from core.db.session import session_scope

        with session_scope(self.engine, readonly=True) as session:
            rows = [jobs.get_job(session, job_id=job_id) for job_id in self.job_ids]
            states = [(row.status, dict(row.progress or {})) for row in rows]
        if len(states) == 1:
            status, progress = states[0]
            if status != "RUNNING" or progress.get("step") is None or progress.get("total") is None:
                return ""
            return progress_text({**progress, "eta_s": self.eta(progress["step"], progress["total"],
                                                                [progress.get("eta_s")])})
        counts = {}
        for status, _ in states:
            counts[status] = counts.get(status, 0) + 1
        steps = sum(p.get("step") or 0 for _, p in states)
        total = sum(p.get("total") or 0 for _, p in states)
        parts = [f"{len(states)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                 f"steps {steps:,}/{total:,}"]
        eta = self.eta(steps, total, [p.get("eta_s") for status, p in states if status == "RUNNING"])
        if eta is not None:
            parts.append(f"ETA {_clock(eta)}")
        return " | ".join(parts)

    def eta(self, steps: int, total: int, worker_etas: list) -> float | None:
        """Seconds left: the remaining steps over the rate of the last ``WINDOW_S`` seconds, once 10 s of it
        are seen (an evaluation pause then slows the estimate a little instead of making it jump); before
        that, the slowest running job's own figure."""
        now = time.monotonic()
        self.seen.append((now, steps))
        while now - self.seen[0][0] > self.WINDOW_S:
            self.seen.popleft()
        (then, before), span = self.seen[0], now - self.seen[0][0]
        if span >= 10 and steps > before:
            return (total - steps) * span / (steps - before)
        known = [e for e in worker_etas if e is not None]
        return max(known) if known else None


def progress_text(p: dict) -> str:
    """``step 300/600 | 45.1 steps/s | loss 0.1234 | test acc 0.500 | peaky ... | ETA 00:07``."""
    if p.get("step") is None or p.get("total") is None:
        return ""
    parts = [f"step {p['step']:,}/{p['total']:,}"]
    if p.get("steps_per_s") is not None:
        parts.append(f"{p['steps_per_s']:5.1f} steps/s")
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.4f}")
    if p.get("test_seq_acc") is not None:
        parts.append(f"test acc {p['test_seq_acc']:.3f}")
    if p.get("peaky"):
        parts.append("peaky " + " ".join(f"{role} {value:.2f}" for role, value in sorted(p["peaky"].items())))
    parts.append(f"ETA {_clock(p.get('eta_s'))}")
    return " | ".join(parts)


def _clock(seconds) -> str:
    """``07:05``, or ``1:15:00`` past an hour; ``?`` when unknown."""
    if seconds is None or seconds != seconds:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes:02d}:{secs:02d}"
