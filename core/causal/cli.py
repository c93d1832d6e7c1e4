"""The causal commands of ``circuitboard``: ``intervene``, ``export`` and ``import-eval``.

    circuitboard intervene 1 --kind edge --head L1H3 --steps all      # run now, print the results
    circuitboard intervene 1 --kind pattern --head L0H3 --head L1H3 --together
    circuitboard intervene 1 --kind ablate --queue                     # queue it for a worker instead
    circuitboard export 1 --step 3000 --format tl --out exported/      # or --format safetensors
    circuitboard import-eval eval.csv --preset paper-polynomial       # the authors' eval.csv as a run

``register(add)`` adds them to core.cli's parser. ``intervene`` creates an ``intervene``
job; without ``--queue`` it claims that job itself and runs it in the foreground, fenced like a
worker's, so the job and its results look the same either way. Bad input exits 2 with one line
per problem, before anything is written.
"""

from __future__ import annotations

import sys

from core.specs import SpecError

EXIT_BAD_INPUT = 2


def register(add) -> None:
    """Add the commands through core.cli's ``add(name, fn, help)``, which gives each its ``--db``."""
    p = add("intervene", cmd_intervene, "test a run's circuit causally: ablate, zero edges, patch patterns or activations, probe")
    p.add_argument("run", type=int)
    p.add_argument("--kind", required=True, choices=("ablate", "edge", "pattern", "activation_patch", "probe"))
    p.add_argument("--variant", action="append", dest="variants", help="e.g. zero, renorm, ideal, shift, resid_post, x_t (repeatable)")
    p.add_argument("--head", action="append", dest="heads", help="L1H3 or L0H* (repeatable; default: the circuit heads)")
    p.add_argument("--together", action="store_true", help="act on all heads at once (one result)")
    p.add_argument("--role", default="auto", choices=("auto", "eoi_locator", "iteration"))
    p.add_argument("--steps", default="last", help="a step, 'last' (default) or 'all' snapshot steps")
    p.add_argument("--shift", type=int, default=-2, help="pattern 'shift' variant: EoI + shift, x_(t + shift)")
    p.add_argument("--source-run", type=int, help="pattern 'run' variant: whose pattern")
    p.add_argument("--source-step", type=int)
    p.add_argument("--layer", type=int, help="probe: the layer of the hook site")
    p.add_argument("--site", default="resid_mid", help="probe: resid_pre, resid_mid, resid_post, attn_out, mlp_out, mlp_post")
    p.add_argument("--metric", default="accuracy", choices=("accuracy", "logit_diff"))
    p.add_argument("--length", type=int, help="activation_patch: the input length (default: max_len)")
    p.add_argument("--rows-per-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queue", action="store_true", help="only queue the job (a worker runs it)")
    p.add_argument("--threads", type=int, help="torch CPU threads")

    p = add("export", cmd_export, "write a run's checkpoint as a TransformerLens model or safetensors")
    p.add_argument("run", type=int)
    p.add_argument("--step", type=int, help="a weights checkpoint's step (default: the last)")
    p.add_argument("--format", required=True, choices=("tl", "safetensors"))
    p.add_argument("--out", required=True, help="output directory")

    p = add("import-eval", cmd_import_eval, "import the authors' eval.csv (facebookresearch/pal) as a run's metrics")
    p.add_argument("file")
    p.add_argument("--run", type=int, help="an existing run to import into (default: a new run)")
    p.add_argument("--preset", default="paper-polynomial", help="the new run's spec (default: paper-polynomial)")
    p.add_argument("--name", help="the new run's name")
    p.add_argument("--steps-per-epoch", type=int, default=64)


def _spec_from(args) -> dict:
    steps = args.steps if args.steps in ("last", "all") else int(args.steps) if args.steps.isdigit() else args.steps
    spec = {"kind": args.kind, "variants": args.variants or [], "heads": args.heads or [], "together": args.together,
            "role": args.role, "shift": args.shift, "source_run": args.source_run, "source_step": args.source_step,
            "metric": args.metric, "length": args.length, "steps": steps, "rows_per_len": args.rows_per_len,
            "seed": args.seed}
    if args.kind == "probe":
        spec.update(layer=args.layer, site=args.site)
    return spec


def cmd_intervene(args) -> int:
    from core.causal.specs import InterventionSpec
    from core.cli import _engine
    from core.db import crud, jobs
    from core.db.models import Status
    from core.db.session import session_scope

    try:
        spec = InterventionSpec.parse(_spec_from(args))
    except SpecError as exc:
        print(f"circuitboard intervene: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    engine = _engine(args.db)
    with session_scope(engine) as session:
        if crud.get_run(session, run_id=args.run) is None:
            print(f"circuitboard intervene: run: no run {args.run}", file=sys.stderr)
            return EXIT_BAD_INPUT
        job_id = jobs.submit_intervention_job(session, run_id=args.run, spec=spec.model_dump(mode="json")).id
    if args.queue:
        from core.settings import get_settings
        from core.submit import dispatch

        dispatch(get_settings(), [job_id])
        print(f"job {job_id} queued: {spec.kind} on run {args.run}")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from core.causal.jobs import execute_intervention_job

    with session_scope(engine) as session:
        claim = jobs.claim(session, job_id=job_id, worker_id="cli", lease_seconds=7 * 24 * 3600)
    try:
        status = execute_intervention_job(engine, job_id, guard=jobs.fence(job_id, claim.token))
    except Exception as exc:
        with session_scope(engine) as session:
            jobs.finish(session, job_id=job_id, token=claim.token, status=Status.FAILED.value, error=str(exc))
        print(f"circuitboard intervene: job {job_id} FAILED: {exc}", file=sys.stderr)
        return 1
    with session_scope(engine) as session:
        jobs.finish(session, job_id=job_id, token=claim.token, status=status)
    print_results(engine, args.run, job_id)
    return 0


def print_results(engine, run_id: int, job_id: int) -> None:
    from core.causal.results import list_results
    from core.db.session import session_scope

    with session_scope(engine, readonly=True) as session:
        rows = [r for r in list_results(session, run_id=run_id) if r["job_id"] == job_id]
    for r in rows:
        res = r["result"]
        if "baseline" in res:
            lengths = " ".join(f"{n}:{v:.2f}" for n, v in res["accuracy_by_length"].items())
            print(f"step {r['step']:>6,}  {r['intervention']:<24} {r['target']:<12} accuracy {res['baseline']['mean']:.3f}"
                  f" -> {res['mean']:.3f}   by length {lengths}")
        elif "grid" in res:
            print(f"step {r['step']:>6,}  {r['intervention']:<24} {r['target']:<12} clean {res['clean']:.3f}"
                  f" corrupted {res['corrupted']:.3f}")
            for layer, row in zip(res["layers"], res["grid"]):
                print(f"    layer {layer}: " + " ".join(f"{v:.2f}" for v in row))
        else:
            print(f"step {r['step']:>6,}  {r['intervention']:<24} {r['target']:<24} held-out accuracy "
                  f"{res['accuracy']:.3f} (chance {res['chance']:.3f})")


def cmd_export(args) -> int:
    from pathlib import Path

    from core.causal.jobs import InterventionError, load_model
    from core.cli import _engine
    from core.ml.export import ExportError, save_safetensors, save_tl

    engine = _engine(args.db)
    try:
        model, spec, step = load_model(engine, args.run, args.step)
        if args.format == "tl":
            paths = save_tl(model, Path(args.out))
        else:
            paths = save_safetensors(model, Path(args.out),
                                     metadata={"run_id": args.run, "step": step, "spec": spec.to_flat()})
    except (InterventionError, ExportError) as exc:
        print(f"circuitboard export: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in paths:
        print(path)
    return 0


def cmd_import_eval(args) -> int:
    from pathlib import Path

    from core.cli import _engine
    from core.db import crud
    from core.db.models import Status
    from core.db.session import session_scope
    from core.eval_import import EvalCsvError, import_eval_csv
    from core.presets import get_preset
    from core.specs import apply_overrides
    from core.summary import summarize

    try:
        text = Path(args.file).read_text()
        spec = None if args.run else apply_overrides(get_preset(args.preset), {})
    except (OSError, SpecError) as exc:
        print(f"circuitboard import-eval: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    engine = _engine(args.db)
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
