"""The ``circuitboard`` command line: one module a command, ``common`` for what they share.

    circuitboard train --preset fast-polynomial [--set key=value ...] [--db URL]
    circuitboard runs [--status S] [--problem P] [--limit N]
    circuitboard show RUN [--json]
    circuitboard serve [--host 127.0.0.1] [--port 8000] [--no-worker]
    circuitboard worker [--broker URL] [--queue cpu|gpu] [--device cpu|cuda:N]
    circuitboard sweep --preset P --axis d_model=32,64 [--axis max_len=4,8] [--seeds 0,1] [--set key=value ...]
    circuitboard sweeps list | cancel SWEEP
    circuitboard jobs [--status S] [--limit N]
    circuitboard migrate
    circuitboard intervene RUN --kind ablate|edge|pattern|activation_patch|probe [--steps S|last|all]
    circuitboard export RUN --step S --format tl|safetensors --out DIR
    circuitboard import-eval eval.csv --preset P

Every command takes ``--db URL``; bad input exits 2 with one line per problem (core.cli.common).
Each command module has ``register(add)``, which adds its subcommand; torch, the server and the
worker load only when a command that needs them runs.
"""

import argparse
import os
import sys

from core.cli import export, import_eval, intervene, jobs, migrate, runs, serve, show, sweep, sweeps, train, worker
from core.cli.common import adder

COMMANDS = (train, runs, show, serve, worker, sweep, sweeps, jobs, migrate, intervene, export, import_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitboard", description="Watch attention circuits form, and test them.")
    add = adder(parser.add_subparsers(dest="command", required=True))
    for command in COMMANDS:
        command.register(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `circuitboard jobs | head` closed the pipe: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
