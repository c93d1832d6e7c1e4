"""``circuitboard import-eval``: the authors' eval.csv (facebookresearch/pal) as a run's metrics.

    circuitboard import-eval eval.csv --preset paper-polynomial
"""

import sys

from core.cli.common import EXIT_BAD_INPUT, open_engine
from core.specs.errors import SpecError


def register(add) -> None:
    p = add("import-eval", cmd_import_eval, "import the authors' eval.csv (facebookresearch/pal) as a run's metrics")
    p.add_argument("file")
    p.add_argument("--run", type=int, help="an existing run to import into (default: a new run)")
    p.add_argument("--preset", default="paper-polynomial", help="the new run's spec (default: paper-polynomial)")
    p.add_argument("--name", help="the new run's name")
    p.add_argument("--steps-per-epoch", type=int, default=64)


def cmd_import_eval(args) -> int:
    from pathlib import Path
    from core.db import crud
    from core.db.models import Status
    from core.db.session import session_scope
    from core.eval_import import EvalCsvError, import_eval_csv
    from core.presets import get_preset
    from core.specs.overrides import apply_overrides
    from core.summary import summarize

    try:
        text = Path(args.file).read_text()
        spec = None if args.run else apply_overrides(get_preset(args.preset), {})
    except (OSError, SpecError) as exc:
        print(f"circuitboard import-eval: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    engine = open_engine(args.db)
    try:
        with session_scope(engine) as session:
            run_id = args.run or crud.create_run(session, spec=spec.to_flat(), preset=args.preset, status=Status.SUCCEEDED,
                                                 name=args.name or f"authors' {Path(args.file).name}").id
            imported = import_eval_csv(session, run_id=run_id, text=text, steps_per_epoch=args.steps_per_epoch)
            crud.update_run(session, run_id=run_id, summary=summarize(crud.get_metrics(session, run_id=run_id), finished=True))
    except (EvalCsvError, crud.RunNotFound) as exc:
        print(f"circuitboard import-eval: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"run {run_id}: {len(imported.rows)} metric values at {len(imported.steps)} steps"
          f"{'; ignored columns: ' + ', '.join(imported.ignored) if imported.ignored else ''}")
    return 0
