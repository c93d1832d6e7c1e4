"""Synthetic populations for the tests and benchmarks of the population views: no training, only rows.

    with session_scope(engine) as session:
        sweep_id = seed_set_rows(session, seeds=range(8), steps=range(0, 1001, 100), name="parity")
        grid_id = grid_rows(session, axes={"d_model": [16, 32], "max_len": [3, 4]}, seeds=[0, 1], steps=[0, 50, 100])
    sweep_id = trained_seed_set(engine, seeds=[0, 1, 2], spec=FAST)  # real tiny runs (FAST: tests/server/conftest.py)

Each member run gets what a trained run records, through ``core.db.crud``: ``test/seq_acc`` at every
step, every head's ``SCORES`` (2 layers x ``n_heads``), a snapshot row at every step (its bytes are a
placeholder: the population views read only its step) and the summary ``core.summary.summarize``
derives from those rows. The curves are smooth rises whose midpoint depends on the seed (``rise``
maps a seed to its midpoint step; a member with midpoint None never learns), so a test knows what
each member should show.

``trained_seed_set`` is the one helper that trains: a seed set of really trained tiny runs (weights
checkpoints included), for what must run real intervention jobs on every member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from core.db import crud
from core.db.models import Status, Sweep
from core.names import EXPECTED_LAYER, ROLES, SCORES, metric_key, score_key
from core.summary import summarize

ACC = metric_key("test", "seq_acc")


def rise(step: int, midpoint: float | None, width: float) -> float:
    """A logistic rise from 0 to 1 centred on ``midpoint`` (0 everywhere when it is None)."""
    if midpoint is None:
        return 0.0
    return 1.0 / (1.0 + math.exp(-(step - midpoint) / width))


def member_rows(steps: Sequence[int], midpoint: float | None, *, n_heads: int = 2, width: float | None = None,
                scores: Sequence[str] = SCORES) -> list[tuple[str, int, float]]:
    """(key, step, value) of one member: accuracy and the circuit heads (head 0 of each expected layer)
    follow the rise; every other head stays low."""
    width = width or max(1.0, (steps[-1] - steps[0]) / 20)
    rows = []
    for step in steps:
        value = rise(step, midpoint, width)
        rows.append((ACC, step, round(value, 6)))
        for role in ROLES:
            for layer in (0, 1):
                for head in range(n_heads):
                    circuit = layer == EXPECTED_LAYER[role] and head == 0
                    for score in scores:
                        scale = (0.98 if circuit else 0.2) * (0.8 if score == "peaky_abs" else 1.0)
                        rows.append((score_key(role, score, layer, head), step, round(value * scale + 0.01 * head, 6)))
    return rows


def _member(session, *, sweep_id: int, cell: dict[str, Any], steps: Sequence[int], midpoint: float | None,
            name: str, status: str, spec: dict | None = None, **options) -> int:
    rows = member_rows(steps, midpoint, **options)
    run = crud.create_run(session, spec={"problem": "parity", **(spec or {}), "steps": steps[-1], "seed": cell.get("seed", 0)},
                          name=name, status=status, sweep_id=sweep_id, tags=["sweep"])
    crud.upsert_metrics(session, run_id=run.id, rows=rows)
    for step in steps:
        crud.put_snapshot(session, run_id=run.id, step=step, data=b"\0", shape=[1], layout={})
    summary = summarize(rows, finished=True) if status == Status.SUCCEEDED.value else {}
    crud.update_run(session, run_id=run.id, sweep_cell=cell, summary=summary, step=steps[-1])
    return run.id


def seed_set_rows(session, *, seeds: Iterable[int], steps: Sequence[int], name: str = "seed set",
                  midpoint: Callable[[int], float | None] | None = None, status: str = Status.SUCCEEDED.value,
                  spec: dict | None = None, **options) -> int:
    """A seed set (a sweep whose only axis is ``seed``) with one member per seed; returns its id.
    ``midpoint(seed)``: where that member's rise is centred (default: a third of the way, later for
    larger seeds); ``spec``: flat keys every member's stored spec gets (``n_layers``, ``n_heads``: what an
    intervention's heads are checked against)."""
    seeds = list(seeds)
    sweep = Sweep(name=name, preset=None, spec={"problem": "parity"}, axes={"seed": seeds})
    session.add(sweep)
    session.flush()
    midpoint = midpoint or (lambda seed: steps[-1] / 3 + seed * (steps[-1] - steps[0]) / (10 * max(1, len(seeds))))
    for seed in seeds:
        _member(session, sweep_id=sweep.id, cell={"seed": seed}, steps=steps, midpoint=midpoint(seed),
                name=f"{name} seed {seed}", status=status, spec=spec, **options)
    return sweep.id


def grid_rows(session, *, axes: dict[str, list], seeds: Sequence[int], steps: Sequence[int], name: str = "grid",
              midpoint: Callable[[dict], float | None] | None = None, **options) -> int:
    """A sweep over two axes and seeds, every cell a finished member; returns its id.
    ``midpoint(cell)``: the member's rise (default: earlier for larger values of the first axis)."""
    (x_key, x_values), (y_key, y_values) = list(axes.items())
    sweep = Sweep(name=name, preset=None, spec={"problem": "parity"}, axes={**axes, "seed": list(seeds)})
    session.add(sweep)
    session.flush()
    span = steps[-1] - steps[0]
    midpoint = midpoint or (lambda cell: steps[0] + span * (0.9 - 0.6 * x_values.index(cell[x_key]) / len(x_values)
                                                             + 0.2 * y_values.index(cell[y_key]) / len(y_values)
                                                             + 0.05 * seeds.index(cell["seed"])))
    for x in x_values:
        for y in y_values:
            for seed in seeds:
                cell = {x_key: x, y_key: y, "seed": seed}
                _member(session, sweep_id=sweep.id, cell=cell, steps=steps, midpoint=midpoint(cell),
                        name=f"{name} {x_key}={x} {y_key}={y} seed={seed}", status=Status.SUCCEEDED.value, **options)
    return sweep.id


def trained_seed_set(engine, *, seeds: Iterable[int], spec: dict[str, Any], name: str = "trained seeds") -> int:
    """A seed set of ``spec`` (flat keys) over ``seeds``, each member queued and trained here, in this
    process (``core.recording.execute_training``; torch, one thread is the caller's choice); returns its id."""
    from core.db.session import session_scope
    from core.recording import execute_training
    from core.specs.run import RunSpec
    from core.submit import submit_run

    seeds = list(seeds)
    with session_scope(engine) as session:
        sweep = Sweep(name=name, preset=None, spec=dict(spec), axes={"seed": seeds})
        session.add(sweep)
        session.flush()
        sweep_id = sweep.id
        run_ids = [submit_run(session, spec=RunSpec.from_flat({**spec, "seed": seed}), name=f"{name} seed {seed}",
                              sweep_id=sweep_id, sweep_cell={"seed": seed}).run_id for seed in seeds]
    for run_id in run_ids:
        outcome = execute_training(engine, run_id)
        if outcome != Status.SUCCEEDED.value:
            raise RuntimeError(f"training run {run_id} ended {outcome}")
    return sweep_id
