"""End to end: a seed set trained as packs against one solo run and against one job per seed.

    python benchmarks/seed_set_speed.py [--seeds 8] [--steps 600] [--d-model 16] [--max-len 8] [--threads 2]

Each variant is the command a user types (``circuitboard train``, a subprocess, on a fresh SQLite
database of its own), timed from start to exit: it includes starting Python and the training
child, the data, evaluation, snapshots, checkpoints and every database write. The config is
``paper-polynomial`` with d_model, max_len and steps changed. Printed: the wall time of each
variant, and each one's ratio to one solo run. Figures go in docs/packed.md with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_train(db: Path, *extra: str, threads: int, sets: list[str]) -> float:
    command = [sys.executable, "-m", "core.cli", "train", "--preset", "paper-polynomial", *sets,
               "--threads", str(threads), "--db", f"sqlite:///{db}", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITBOARD_")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--d-model", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sets = [item for pair in (("--set", f"d_model={args.d_model}"), ("--set", f"max_len={args.max_len}"),
                              ("--set", f"steps={args.steps}")) for item in pair]
    seeds = f"0-{args.seeds - 1}"
    with tempfile.TemporaryDirectory() as tmp:
        solo = timed_train(Path(tmp) / "solo.db", threads=args.threads, sets=sets)
        packed = timed_train(Path(tmp) / "packed.db", "--seeds", seeds, threads=args.threads, sets=sets)
        one_per_job = timed_train(Path(tmp) / "jobs.db", "--seeds", seeds, "--pack-size", "1",
                                  threads=args.threads, sets=sets)
    print(f"paper-polynomial, d_model {args.d_model}, max_len {args.max_len}, {args.steps} steps, "
          f"{args.threads} threads")
    print(f"{'variant':<34} {'wall s':>8} {'x one solo run':>15}")
    for name, seconds in ((f"one solo run", solo), (f"{args.seeds} seeds as one seed set (packs)", packed),
                          (f"{args.seeds} seeds, one job each (--pack-size 1)", one_per_job)):
        print(f"{name:<34} {seconds:8.1f} {seconds / solo:15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
