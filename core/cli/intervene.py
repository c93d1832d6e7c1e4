"""``circuitboard intervene``: test a run's circuit causally (ablate, edge, pattern, activation_patch, probe).

    circuitboard intervene 1 --kind edge --head L1H3 --steps all      # run now, print the results
    circuitboard intervene 1 --kind pattern --head L0H3 --head L1H3 --together
    circuitboard intervene 1 --kind ablate --queue                     # queue it for a worker instead

It creates an ``intervene`` job; without ``--queue`` it claims that job itself and runs it in the
foreground, fenced like a worker's, so the job and its results look the same either way.
"""

import sys

from core.cli.common import EXIT_BAD_INPUT, open_engine
from core.specs.errors import SpecError


def register(add) -> None:
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
    from core.db import crud, jobs
    from core.db.models import Status
    from core.db.session import session_scope

    try:
        spec = InterventionSpec.parse(_spec_from(args))
    except SpecError as exc:
        print(f"circuitboard intervene: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    engine = open_engine(args.db)
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
