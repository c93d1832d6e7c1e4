"""``circuitboard train``: train a run in the foreground and record it, with a live progress line.

    circuitboard train --preset fast-polynomial [--set key=value ...] [--name NAME] [--threads N]
"""

import sys
import time

from core.cli.common import EXIT_BAD_INPUT, open_engine
from core.cli.show import show
from core.specs.errors import SpecError
from core.specs.overrides import apply_overrides, parse_set


def register(add) -> None:
    p = add("train", cmd_train, "train a run in the foreground and record it")
    p.add_argument("--preset", required=True, help="e.g. fast-polynomial, paper-polynomial")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (repeatable)")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


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

    engine = open_engine(args.db)
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
