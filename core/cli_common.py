"""What every ``circuitboard`` command shares: its database engine and its exit codes.

``core.cli`` builds the parser and the core commands; ``core.causal.cli`` adds intervene, export and
import-eval. Both import this module and neither imports the other's internals, so the command line
has no import cycle.
"""

from __future__ import annotations

from core.settings import get_settings

EXIT_BAD_INPUT = 2  # bad input: one line per problem on stderr, nothing written


def open_engine(url: str | None):
    """An engine on ``url`` (default: the ``CIRCUITBOARD_DATABASE_URL`` setting), schema migrated first."""
    from core.db.session import make_engine, upgrade

    url = url or get_settings().database_url
    upgrade(url)
    return make_engine(url)
