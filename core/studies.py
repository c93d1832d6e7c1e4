"""The paper's population figures as sweep presets: ``circuitboard sweep --preset paper-dynamics-cpu``.

A study is a few *arms* queued together, each a seed set or a grid (a sweep row of its own, so
each has its seed-set or grid page and the arms compare as populations):

- ``paper-dynamics``: polynomial and parity from scratch, and parity fine-tuned from each
  polynomial seed at step 12,800 (epoch 200), fully and second-MLP-only; 100 seeds each, the
  paper's 64,000 steps (GPU workers).
- ``paper-dynamics-cpu``: the same four arms with 8 seeds on a small model (d_model 32, 2 heads,
  max_len 8, lr 3e-3, 1,500 steps; the fine-tunes 400 steps from the polynomial's step 1,500), sized
  to finish within 20 minutes on a 2-core CPU with ``circuitboard serve --local-workers 2``
  (docs/reproduce.md has the measured time).
- ``paper-scaling``: L_max 4..31 x d_model 4..63 (1,680 cells) of paper-polynomial, 64,000 steps.
- ``paper-scaling-cpu``: a 6 x 6 grid (L_max 4..14, d_model 8..48), 1,000 steps each at lr 3e-3.

A fine-tuned arm's members start from their own parents' weights (``core.seed_sets``); they wait in
the queue until each parent has recorded weights at the step, so the whole study is queued at once.

    launched = launch_study(session, "paper-dynamics-cpu")
    dispatch(settings, launched.job_ids)          # after the commit

Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from core.seed_sets import finetune_seed_set
from core.specs.errors import SpecError
from core.specs.sweep import SweepSpec
from core.sweeps import create_sweep, expand_sweep


@dataclass(frozen=True)
class Arm:
    """One population of a study: a preset with overrides, crossed with seeds and axes, or fine-tuned
    from another arm (``from_arm``) at ``at_step``."""

    name: str
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    axes: dict[str, list[int]] = field(default_factory=dict)
    from_arm: str | None = None
    at_step: int | None = None


@dataclass(frozen=True)
class Study:
    title: str
    arms: tuple[Arm, ...]


# The CPU variants, calibrated on this 2-core machine (docs/reproduce.md, "Populations"): d_model 16
# had not begun to learn polynomial by step 1,400 of 2,000 (test accuracy <= 0.002 for 8 seeds),
# d_model 32 at lr 1e-3 not by 1,100 either; d_model 32 at lr 3e-3 reached 0.98-1.00 by step 1,500
# for 3 seeds of 4 (1,000 steps, whose cosine schedule decays sooner, left 7 seeds of 8 below 0.1).
SMALL = {"d_model": 32, "n_heads": 2, "max_len": 8, "lr": 3e-3, "steps": 1500, "eval_every": 100,
         "snapshot_every": 100, "checkpoint_every": 500, "warmup_steps": 100, "eval_generate": False}
FINE_TUNE_SMALL = {**SMALL, "steps": 400, "eval_every": 50, "snapshot_every": 50}  # steps to 0.99 to within 50


def _dynamics(seeds: range, base: dict[str, Any], tune: dict[str, Any], at_step: int, tag: str) -> Study:
    return Study(f"paper dynamics{tag}: polynomial, parity, parity fine-tuned from polynomial (full, MLP2 only)", (
        Arm("polynomial", "paper-polynomial" if not tag else "fast-polynomial", base, tuple(seeds)),
        Arm("parity", "paper-parity" if not tag else "fast-parity", base, tuple(seeds)),
        Arm("parity from polynomial", "paper-parity" if not tag else "fast-parity", tune, from_arm="polynomial",
            at_step=at_step),
        Arm("parity from polynomial, MLP2 only", "paper-parity" if not tag else "fast-parity",
            {**tune, "trainable": "mlp2"}, from_arm="polynomial", at_step=at_step),
    ))


STUDIES: dict[str, Study] = {
    "paper-dynamics": _dynamics(range(100), {}, {}, 12_800, ""),
    "paper-dynamics-cpu": _dynamics(range(8), SMALL, FINE_TUNE_SMALL, 1500, " (CPU)"),
    "paper-scaling": Study("paper scaling: test accuracy and both heads over L_max x d_model", (
        Arm("scaling", "paper-polynomial", {}, (0,), {"max_len": list(range(4, 32)), "d_model": list(range(4, 64))}),)),
    "paper-scaling-cpu": Study("paper scaling (CPU): a 6 x 6 grid of L_max x d_model", (
        Arm("scaling", "fast-polynomial", {"steps": 1000, "lr": 3e-3, "eval_every": 250, "snapshot_every": 250,
                                           "checkpoint_every": 500, "n_heads": 1, "eval_generate": False},
            (0,), {"max_len": [4, 6, 8, 10, 12, 14], "d_model": [8, 16, 24, 32, 40, 48]}),)),
}


@dataclass(frozen=True)
class Launched:
    sweep_ids: dict[str, int]  # arm name -> its sweep
    job_ids: list[int]  # sweep jobs and fine-tune members' train jobs: dispatch them after the commit


def launch_study(session: Session, name: str, *, pack_size: int | None = None) -> Launched:
    """Queue every arm of study ``name`` (flushed; the caller commits, then dispatches)."""
    study = STUDIES.get(name)
    if study is None:
        raise SpecError([("preset", f"unknown study {name!r}; known: {', '.join(STUDIES)}")])
    sweep_ids: dict[str, int] = {}
    job_ids: list[int] = []
    for arm in study.arms:
        label = f"{name}: {arm.name}"
        if arm.from_arm is None:
            spec = SweepSpec.parse({"preset": arm.preset, "overrides": arm.overrides, "axes": arm.axes,
                                    "seeds": list(arm.seeds), "pack_size": pack_size})
            created = create_sweep(session, spec=spec, name=label)
            expand_sweep(session, sweep_id=created.sweep_id, pack_size=pack_size)  # its cells exist now
            sweep_ids[arm.name], job_ids = created.sweep_id, [*job_ids, created.job_id]
        else:
            tuned = finetune_seed_set(session, parent_sweep_id=sweep_ids[arm.from_arm], step=arm.at_step,
                                      preset=arm.preset, overrides=arm.overrides, name=label, pack_size=pack_size)
            sweep_ids[arm.name], job_ids = tuned.sweep_id, [*job_ids, *tuned.job_ids]
    return Launched(sweep_ids=sweep_ids, job_ids=job_ids)
