"""``circuitboard show``: print a run's summary (``--json``: the whole record).

    circuitboard show RUN [--json]
"""

import json
import sys

from core.cli.common import open_engine


def register(add) -> None:
    p = add("show", cmd_show, "print a run's summary")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")


def cmd_show(args) -> int:
    return show(open_engine(args.db), args.run, as_json=args.json)


def show(engine, run_id: int, *, as_json: bool) -> int:
    from core.db import crud
    from core.db.session import session_scope
    from core.summary import run_summary

    with session_scope(engine) as session:
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            print(f"circuitboard show: no run {run_id}", file=sys.stderr)
            return 1
        summary = run_summary(session, run)
        record = {"id": run.id, "name": run.name, "status": run.status, "preset": run.preset,
                  "step": run.step, "total_steps": run.total_steps, "error": run.error,
                  "spec": run.spec, "summary": summary}
    if as_json:
        print(json.dumps(record, indent=2, default=str))
        return 0
    print(f"run {record['id']} {record['name'] or ''} [{record['status']}] {record['preset'] or ''}"
          f" step {record['step']:,}/{record['total_steps']:,}")
    if record["error"]:
        print(f"error: {record['error'].splitlines()[0]}")
    print(f"verdict: {summary.get('verdict') or '-'}")
    for split in ("train", "test"):
        acc = summary.get("accuracy", {}).get(split, {})
        if acc.get("seq_acc") is None:
            continue
        by_len = " ".join(f"{n}:{v:.2f}" for n, v in acc["seq_acc_by_length"].items())
        print(f"{split} seq_acc {acc['seq_acc']:.3f} (L=4..max) at step {acc['step']:,}; by length {by_len}")
        for extra in ("gen_acc", "gen_answer_acc", "seq_acc_heldout"):
            if extra in acc:
                print(f"  {extra} {acc[extra]:.3f}")
    for role, info in summary.get("heads", {}).items():
        scores = " ".join(f"{k} {v:.3f}" for k, v in info["scores"].items() if v is not None)
        emerged = (f"emerged at step {info['emerged_step']:,}" if info["emerged_step"] is not None
                   else "never reached the bar" if summary.get("finished") else "not at the bar yet")
        emerged += f"; {info.get('grade', '?')} against the {info.get('bar', 0.9):.2f} bar"
        print(f"{role}: {info['label']} (theory: layer {info['expected_layer']}) {scores}; {emerged}")
        if "stronger_elsewhere" in info:
            other = info["stronger_elsewhere"]
            print(f"  outside layer {info['expected_layer']}: {other['label']} peaky_thres {other['peaky_thres']:.3f}")
    return 0
