"""``circuitboard sweeps``: list the sweeps, and cancel one (its unexpanded job and every cell's run).

    circuitboard sweeps list [--limit N]
    circuitboard sweeps cancel SWEEP

``cancel`` is ``core.sweeps.cancel_sweep``, the same one transaction as ``POST /api/sweeps/{id}/cancel``:
queued cells end at once, running ones are flagged and their workers stop them, and a sweep job that
had not expanded yet expands nothing. An unknown sweep exits 2.
"""

import argparse
from collections import Counter

from core.cli.common import bad_input, open_engine


def register(add) -> None:
    p = add("sweeps", cmd_list, "list sweeps, or cancel one with everything it queued")  # an action is required
    sub = p.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="the sweeps, newest first, with their cells' statuses")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(fn=cmd_list)
    cancel = sub.add_parser("cancel", help="cancel a sweep: its job, expanded or not, and every cell's run")
    cancel.add_argument("sweep", type=int, metavar="SWEEP")
    cancel.set_defaults(fn=cmd_cancel)
    for each in (listing, cancel):  # `circuitboard sweeps cancel 4 --db URL` as well as `sweeps --db URL cancel 4`
        each.add_argument("--db", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def statuses(cells: list[dict]) -> str:
    """``2 SUCCEEDED, 1 RUNNING, 5 not queued`` for a sweep's cells (``core.sweeps.sweep_cells``)."""
    counts = Counter(cell["run"]["status"] if cell["run"] else "not queued" for cell in cells)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda item: -item[1]))


def cmd_list(args) -> int:
    from sqlalchemy import select

    from core.db.models import Sweep
    from core.db.session import session_scope
    from core.sweeps import sweep_cells

    engine = open_engine(args.db)
    with session_scope(engine, readonly=True) as session:
        sweeps = session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(args.limit)).all()
        print(f"{'id':>5}  {'name':<30} {'cells':>5}  {'cancelled':<10} statuses")
        for sweep in sweeps:
            cells = sweep_cells(session, sweep_id=sweep.id)
            cancelled = sweep.cancelled_at.strftime("%Y-%m-%d") if sweep.cancelled_at else "-"
            print(f"{sweep.id:>5}  {(sweep.name or '')[:30]:<30} {len(cells):>5}  {cancelled:<10} {statuses(cells)}")
    return 0


def cmd_cancel(args) -> int:
    from core.db.session import session_scope
    from core.sweeps import SweepError, cancel_sweep

    engine = open_engine(args.db)
    try:
        with session_scope(engine) as session:
            cells = cancel_sweep(session, sweep_id=args.sweep)
    except SweepError as exc:
        return bad_input("sweeps cancel", exc)
    print(f"sweep {args.sweep} cancelled: {statuses(cells)} (a RUNNING cell stops when its worker sees the cancel)")
    return 0
