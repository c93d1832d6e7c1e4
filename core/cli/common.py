"""What every command shares: the database engine behind ``--db``, the exit status of bad input, and
how a command adds itself to the parser.

Every command takes ``--db URL`` (default: the ``CIRCUITBOARD_DATABASE_URL`` setting, else a SQLite
file ``circuitboard.db`` in the working directory). Bad input (an unknown preset or key, a value
out of bounds) exits with ``EXIT_BAD_INPUT`` (2) and one line per problem, before anything is
allocated or written.
"""

import argparse
import sys

from core.settings import settings_with

EXIT_BAD_INPUT = 2
DB_HELP = "database URL (default: CIRCUITBOARD_DATABASE_URL or sqlite:///circuitboard.db)"


def open_engine(url: str | None):
    """The engine for ``--db`` (or the setting), its schema migrated to head."""
    from core.db.session import make_engine, upgrade

    url = settings_with(database_url=url).database_url
    upgrade(url)
    return make_engine(url)


def bad_input(command: str, exc: Exception) -> int:
    """Print ``circuitboard COMMAND: problem`` once per line of ``exc``; return EXIT_BAD_INPUT."""
    prefix = f"circuitboard {command}: "
    print(prefix + str(exc).replace("\n", "\n" + prefix), file=sys.stderr)
    return EXIT_BAD_INPUT


def adder(sub: argparse._SubParsersAction):
    """``add(name, fn, help)``: a subcommand with its ``--db``, run by ``fn(args)``."""

    def add(name, fn, help):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--db", help=DB_HELP)
        p.set_defaults(fn=fn)
        return p

    return add
