"""The causal figures of docs/reproduce.md, measured on a database holding a trained polynomial run.

    python benchmarks/causal_figures.py --db sqlite:////tmp/causal.db --run 1 [--step 3000]
        [--transfer scratch=2 full=3 mlp2=4] [--rows-per-len 256] [--threads 1]

1. Interventions on run ``--run`` at ``--step`` (default: its last weights checkpoint), each run as an
   ``intervene`` job in this process (skipped when already stored) and printed as test sequence
   accuracy (L = 4..max) before -> after, and per length:
   - the EoI edge zeroed in every layer-0 head, and in the EoI circuit head alone (renormalised, raw);
   - the iteration edge zeroed in every layer-1 head, and in the iteration circuit head alone;
   - both circuit heads patched to their ideal maps together (and every layer-0 head to the EoI map,
     with the iteration head's ideal map);
   - the EoI circuit head (every layer-0 head too) patched onto EoI - 2: the failure pattern;
   - zero / mean / resample ablation of each circuit head;
   - linear probes on the layer-1 residual stream, and activation patching of resid_post.
2. Transfer: for each ``NAME=RUN`` given, the first evaluated step at which test accuracy reached 0.99
   (and the best accuracy seen), so fine-tuning from a polynomial checkpoint can be compared with
   parity from scratch, and the second-layer-MLP-only fine-tune with both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.causal.jobs import execute_intervention_job  # noqa: E402
from core.causal.results import list_results  # noqa: E402
from core.db import crud, jobs  # noqa: E402
from core.db.session import make_engine, session_scope  # noqa: E402
from core.summary import causal_verdict, run_summary  # noqa: E402

GOAL = 0.99


def specs(summary: dict, step, rows: int) -> list[dict]:
    heads = summary["heads"]
    eoi, it = heads["eoi_locator"]["label"], heads["iteration"]["label"]
    common = {"steps": step, "rows_per_len": rows}
    return [
        {"kind": "edge", "heads": ["L0H*", eoi], "role": "eoi_locator", **common},
        {"kind": "edge", "heads": ["L1H*", it], "role": "iteration", **common},
        {"kind": "pattern", "variants": ["ideal"], "heads": [eoi, it], "together": True, **common},
        {"kind": "pattern", "variants": ["ideal"], "heads": ["L0H*", it], "together": True, **common},
        {"kind": "pattern", "variants": ["shift"], "shift": -2, "heads": [eoi, "L0H*"], "role": "eoi_locator", **common},
        {"kind": "ablate", **common},
        {"kind": "probe", "layer": 1, "site": "resid_mid", "variants": ["eoi_position", "t", "y_prev", "x_t"], **common},
        {"kind": "activation_patch", "variants": ["resid_post"], "metric": "logit_diff", "rows_per_len": 64, "steps": step},
    ]


def print_results(rows: list[dict]) -> None:
    for r in rows:
        res = r["result"]
        if "baseline" in res:
            lengths = " ".join(f"{v:.2f}" for v in res["accuracy_by_length"].values())
            print(f"  {r['intervention']:<22} {r['target']:<12} {res['baseline']['mean']:.3f} -> {res['mean']:.3f}"
                  f"   by L=1..: {lengths}")
            if "diagnosis" in res:
                d = res["diagnosis"]
                follows = " ".join(f"{int(k):+d}:{v:.2f}" for k, v in sorted(d["follows"].items(), key=lambda kv: int(kv[0])))
                print(f"      at L={d['length']}: y_t right by t: " + " ".join(f"{v:.2f}" for v in d["by_t"])
                      + f"; predictions equal step(y_t-1, x_t+k) for k {follows}")
        elif "grid" in res:
            print(f"  {r['intervention']:<22} {r['target']:<12} clean {res['clean']:.3f}, corrupted {res['corrupted']:.3f}")
            for layer, row in zip(res["layers"], res["grid"]):
                print(f"      layer {layer} by position: " + " ".join(f"{v:.2f}" for v in row))
        else:
            print(f"  {r['intervention']:<22} {r['target']:<24} held-out {res['accuracy']:.3f} (chance {res['chance']:.3f})")


def steps_to_goal(session, run_id: int) -> tuple[int | None, float, int]:
    rows = crud.get_metrics(session, run_id=run_id, keys=["test/seq_acc"])
    reached = [step for _, step, value in rows if value >= GOAL]
    return (min(reached) if reached else None, max((v for *_, v in rows), default=float("nan")),
            max((s for _, s, _ in rows), default=0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", type=int, required=True, help="a trained polynomial run")
    parser.add_argument("--step", type=int, help="a weights checkpoint's step (default: the last)")
    parser.add_argument("--rows-per-len", type=int, default=256)
    parser.add_argument("--transfer", nargs="*", default=[], metavar="NAME=RUN")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-interventions", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    engine = make_engine(args.db)
    with session_scope(engine, readonly=True) as session:
        run = crud.get_run(session, run_id=args.run)
        summary = run_summary(session, run)  # derived from its metrics while it still trains
        title = run.name or run.preset
        step = args.step if args.step is not None else max(crud.checkpoint_steps(session, run_id=args.run, kind="weights"))
    if not args.skip_interventions:
        for spec in specs(summary, step, args.rows_per_len):
            with session_scope(engine) as session:
                job_id = jobs.submit_intervention_job(session, run_id=args.run, spec=spec).id
            execute_intervention_job(engine, job_id)
    with session_scope(engine, readonly=True) as session:
        rows = list_results(session, run_id=args.run, step=step)
        print(f"run {args.run} ({title}) at step {step:,}: {summary.get('verdict', '')}")
        print("test sequence accuracy (L = 4..max) untouched -> intervened, and per length:")
        print_results(rows)
        print("causal verdict:")
        for line in causal_verdict(summary, rows)["lines"]:
            print("  " + line["text"])
        if args.transfer:
            print(f"transfer: first evaluated step with test accuracy >= {GOAL}")
        for item in args.transfer:
            name, run_id = item.split("=")
            first, best, last = steps_to_goal(session, int(run_id))
            parent = crud.get_run(session, run_id=int(run_id))
            lineage = f"from run {parent.parent_run_id}@{parent.parent_step}" if parent.parent_run_id else "from scratch"
            trainable = (parent.spec or {}).get("trainable", "all")
            print(f"  {name:<8} run {run_id} ({lineage}, trainable {trainable}): "
                  f"{'step ' + format(first, ',') if first is not None else 'not reached'}"
                  f" (best {best:.3f}, trained to step {last:,})")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
