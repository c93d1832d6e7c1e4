"""``circuitboard runs``: list runs, newest first.

    circuitboard runs [--status S] [--problem P] [--limit N]
"""

from core.cli.common import open_engine


def register(add) -> None:
    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("--status")
    p.add_argument("--problem")
    p.add_argument("--limit", type=int, default=50)


def cmd_runs(args) -> int:
    from core.db import crud
    from core.db.session import session_scope

    engine = open_engine(args.db)
    with session_scope(engine) as session:
        runs = crud.list_runs(session, status=args.status, problem=args.problem, limit=args.limit)
        print(f"{'id':>5}  {'status':<10} {'problem':<20} {'preset':<18} {'step':>14}  {'test acc':>8}  name")
        for run in runs:
            acc = ((run.summary or {}).get("accuracy", {}).get("test", {}) or {}).get("seq_acc")
            progress = f"{run.step:,}/{run.total_steps:,}"
            print(f"{run.id:>5}  {run.status:<10} {run.spec.get('problem', ''):<20} {run.preset or '-':<18} "
                  f"{progress:>14}  {'' if acc is None else f'{acc:.3f}':>8}  {run.name or ''}")
    return 0
