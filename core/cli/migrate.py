"""``circuitboard migrate``: create or upgrade the database schema.

    circuitboard migrate [--db URL]
"""

import sys

from core.cli.common import open_engine


def register(add) -> None:
    add("migrate", cmd_migrate, "create or upgrade the database schema")


def cmd_migrate(args) -> int:
    open_engine(args.db)
    print("database at head", file=sys.stderr)
    return 0
