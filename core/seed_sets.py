"""Fine-tune a whole seed set (or grid) from another, each member from its own parent.

    created = finetune_seed_set(session, parent_sweep_id=3, step=12_800, preset="paper-parity",
                                overrides={"trainable": "mlp2"}, name="parity from polynomial, MLP2 only")
    dispatch(settings, created.job_ids)          # after the commit

A seed set is a sweep whose only axis is ``seed`` (``circuitboard train --seeds``, ``POST /api/sweeps``
with seeds). Fine-tuning one makes a new sweep with the parent's cells: the member of cell
``{"seed": 3}`` starts from the parent set's run of that cell at ``step`` (``init_from``), on the
new base spec (a preset and overrides: the problem, the steps, what trains: ``trainable=all``,
``mlp2`` as the reference's transfer, or chosen modules). The parents need not have reached
``step`` yet: a member whose parent is still training waits in the queue for that checkpoint
(``worker.execute`` defers it), so the paper's dynamics arms can be queued at once.

Bad input raises SpecError naming the field, before anything is written: an unknown or empty
parent set, a step no parent records weights at, a base whose weights would not fit the parents'.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import crud
from core.db.models import Run, Sweep
from core.presets import get_preset
from core.specs.errors import SpecError
from core.specs.run import RunSpec
from core.specs.sweep import cell_label
from core.submit import LIVE, check_init_from, submit_run, will_record_weights
from core.sweeps import submit_key


@dataclass(frozen=True)
class FineTuned:
    sweep_id: int
    job_ids: list[int]  # the members' train jobs: dispatch them after the commit


def finetune_seed_set(session: Session, *, parent_sweep_id: int, step: int, preset: str | None = None,
                      overrides: dict[str, Any] | None = None, name: str | None = None,
                      pack_size: int | None = None) -> FineTuned:
    """Queue one run per cell of sweep ``parent_sweep_id``, each from its parent's weights at ``step``."""
    parent_set = session.get(Sweep, parent_sweep_id)
    if parent_set is None:
        raise SpecError([("seed_set", f"there is no seed set {parent_sweep_id}")])
    parents = list(session.scalars(select(Run).where(Run.sweep_id == parent_sweep_id).order_by(Run.id)))
    if not parents:
        raise SpecError([("seed_set", f"seed set {parent_sweep_id} has no runs yet (its sweep job expands them)")])
    base = {**(get_preset(preset) if preset else {}), **(overrides or {})}
    base.pop("init_from", None)
    unreachable = [run.id for run in parents if not will_record_weights(run, step)
                   or (run.status not in LIVE and step not in crud.checkpoint_steps(session, run_id=run.id))]
    if unreachable:
        raise SpecError([("step", f"runs {_ids(unreachable)} of seed set {parent_sweep_id} record no weights at "
                                  f"step {step} (weights are kept at snapshot steps and the last step; a finished run only "
                                  f"has the ones it recorded)")])
    members = []  # every member validated before anything is written
    for parent in parents:
        cell = dict(parent.sweep_cell or {})
        spec = RunSpec.from_flat({**base, **cell, "init_from": f"{parent.id}@{step}"})
        check_init_from(session, spec.train.init_from, spec=spec)
        members.append((cell, spec))
    sweep = Sweep(name=name or f"{parent_set.name or f'sweep {parent_sweep_id}'} -> fine-tuned at step {step}",
                  preset=preset, spec=RunSpec.from_flat(base).to_flat(), axes=dict(parent_set.axes))
    session.add(sweep)
    session.flush()
    job_ids = []
    for cell, spec in members:
        queued = submit_run(session, spec=spec, name=f"{sweep.name} {cell_label(cell)}", preset=preset,
                            key=submit_key(sweep.id, cell), tags=["sweep", "fine-tune"], sweep_id=sweep.id,
                            sweep_cell=cell, pack_size=pack_size)
        job_ids.append(queued.job_id)
    return FineTuned(sweep_id=sweep.id, job_ids=job_ids)


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:8])) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
