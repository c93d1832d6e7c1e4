"""``circuitboard export``: write a run's checkpoint as a TransformerLens model or safetensors.

    circuitboard export 1 --step 3000 --format tl --out exported/      # or --format safetensors
"""

import sys

from core.cli.common import EXIT_BAD_INPUT, open_engine


def register(add) -> None:
    p = add("export", cmd_export, "write a run's checkpoint as a TransformerLens model or safetensors")
    p.add_argument("run", type=int)
    p.add_argument("--step", type=int, help="a weights checkpoint's step (default: the last)")
    p.add_argument("--format", required=True, choices=("tl", "safetensors"))
    p.add_argument("--out", required=True, help="output directory")


def cmd_export(args) -> int:
    from pathlib import Path

    from core.causal.jobs import InterventionError, load_model
    from core.ml.export import ExportError, save_safetensors, save_tl

    engine = open_engine(args.db)
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
