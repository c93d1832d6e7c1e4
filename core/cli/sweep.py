"""``circuitboard sweep``: queue a grid of runs, a preset crossed with up to two numeric axes and seeds.

    circuitboard sweep --preset P --axis d_model=32,64 [--axis max_len=4,8] [--seeds 0-3] [--set key=value ...] [--pack-size N]
    circuitboard sweep --preset paper-dynamics-cpu                  # a study: several seed sets at once (core/studies.py)
    circuitboard sweep --finetune-from SWEEP --step N --preset P [--set trainable=mlp2]   # each member from its own parent

A worker trains the cells of one model shape (and batch size and device) together, in packs of
``--pack-size`` runs (docs/packed.md, "Jobs run packs").
"""

import re

from core.cli.common import bad_input, open_engine
from core.settings import get_settings
from core.specs.errors import SpecError
from core.specs.overrides import parse_set


def register(add) -> None:
    p = add("sweep", cmd_sweep, "queue a grid of runs: a preset crossed with up to two numeric axes and seeds")
    p.add_argument("--preset", required=True, help="e.g. fast-parity")
    p.add_argument("--axis", action="append", metavar="KEY=V1,V2", help="a numeric spec key and its values (at most 2)")
    p.add_argument("--seeds", metavar="0-7", help="seeds, crossed with the axes: e.g. 0-99 or 0,3,5")
    p.add_argument("--pack-size", type=int, help="runs a worker trains together in one pack (default: its choice)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a base spec key (repeatable)")
    p.add_argument("--name", help="a name for the sweep")
    p.add_argument("--finetune-from", type=int, metavar="SWEEP", help="fine-tune every run of this seed set or grid")
    p.add_argument("--step", type=int, help="with --finetune-from: the parents' step to start from")


def cmd_sweep(args) -> int:
    from core.packing import check_pack_size, parse_seeds
    from core.specs.sweep import SweepSpec
    from core.studies import STUDIES

    if args.preset in STUDIES or args.finetune_from is not None:
        return queue_populations(args)
    try:
        axes = dict(parse_axis(item) for item in args.axis or [])
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
        if args.pack_size is not None:
            check_pack_size(args.pack_size, field="pack-size")
        spec = SweepSpec.parse({"preset": args.preset, "overrides": parse_set(args.set or []),
                                "axes": axes, "seeds": seeds, "pack_size": args.pack_size})
    except SpecError as exc:
        return bad_input("sweep", exc)
    from core.db.session import session_scope
    from core.submit import dispatch
    from core.sweeps import create_sweep

    engine = open_engine(args.db)
    with session_scope(engine) as session:
        created = create_sweep(session, spec=spec, name=args.name)
    dispatch(get_settings(), [created.job_id])
    print(f"sweep {created.sweep_id}: {len(spec.cells())} cells ({' x '.join(f'{k} {v}' for k, v in spec.stored_axes().items())}); "
          f"job {created.job_id} expands them into runs when a worker takes it")
    return 0


def queue_populations(args) -> int:
    """A study (``--preset paper-dynamics-cpu``) or a fine-tuned copy of a seed set (``--finetune-from``)."""
    from core.db.session import session_scope
    from core.packing import check_pack_size
    from core.seed_sets import finetune_seed_set
    from core.studies import STUDIES, launch_study
    from core.submit import dispatch

    try:
        if args.pack_size is not None:
            check_pack_size(args.pack_size, field="pack-size")
        if args.finetune_from is not None and args.step is None:
            raise SpecError([("step", "--finetune-from needs --step N: the parents' step to start from")])
        if args.preset in STUDIES and (args.axis or args.seeds or args.set or args.finetune_from is not None):
            raise SpecError([("preset", f"{args.preset} is a study with its own arms; it takes no --axis, --seeds, "
                                        f"--set or --finetune-from")])
        engine = open_engine(args.db)
        with session_scope(engine) as session:
            if args.preset in STUDIES:
                launched = launch_study(session, args.preset, pack_size=args.pack_size)
                sweep_ids, job_ids = launched.sweep_ids, launched.job_ids
            else:
                tuned = finetune_seed_set(session, parent_sweep_id=args.finetune_from, step=args.step,
                                          preset=args.preset, overrides=parse_set(args.set or []), name=args.name,
                                          pack_size=args.pack_size)
                sweep_ids, job_ids = {args.name or "fine-tuned": tuned.sweep_id}, tuned.job_ids
    except SpecError as exc:
        return bad_input("sweep", exc)
    dispatch(get_settings(), job_ids)
    grids = {arm.name for arm in STUDIES[args.preset].arms if arm.axes} if args.preset in STUDIES else set()
    for arm, sweep_id in sweep_ids.items():
        print(f"sweep {sweep_id}: {arm}  ({'/sweeps' if arm in grids else '/seed-sets'}/{sweep_id})")
    if len(sweep_ids) > 1:
        print(f"compare them: /seed-sets/compare?sets={','.join(map(str, sweep_ids.values()))}")
    return 0


def parse_axis(text: str) -> tuple[str, list[float | int]]:
    """``d_model=32,64`` -> ("d_model", [32, 64]); SpecError on anything else."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise SpecError([(f"axes.{key}" if key else "axes", f"expected KEY=V1,V2,... (got {text!r})")])
    parsed: list[float | int] = []
    for value in values.split(","):
        try:
            parsed.append(int(value) if re.fullmatch(r"\s*-?\d+\s*", value) else float(value))
        except ValueError:
            raise SpecError([(f"axes.{key}", f"values must be numbers (got {value.strip()!r})")]) from None
    return key, parsed
