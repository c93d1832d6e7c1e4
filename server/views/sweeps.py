"""A sweep as the dashboard reads it: every cell with its run, and the paper's scaling heatmaps.

    data = sweeps.sweep_view(session, sweep_id=4, access=access)       # what /sweeps/4 and /api/sweeps/4 show
    data = sweeps.sweep_view(session, sweep_id=4, access=access, step=2000, score="peaky_abs")  # ?step=&score=
    index = sweeps.sweeps_index(session, access=access)               # /sweeps and /api/sweeps

Every cell carries its run's test accuracy and each circuit head's score (peaky_thres unless asked),
final or at a snapshot step; the heatmaps put those over the two swept axes (mean over seeds, the
std, min, max and n on hover), and ``links`` gives the run a click on each heatmap cell opens. The grid is read with ``core.population.grid_members`` (a few numbers of each
run, extracted by the database) in the order ``core.sweeps.sweep_cells`` uses; links are ``access.url``
paths, so a shared sweep links inside its share.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.orm import Session

from core import population
from core.db.models import Sweep
from core.names import PEAKY_THRES, ROLE_TITLES, ROLES, SCORES
from core.specs.errors import SpecError
from core.specs.sweep import SweepSpec, cell_label
from server import figures_population as F
from server.access import Access
from server.errors import NotFound


def grid_order(sweep: Sweep, members: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(cell, its run or None) for every cell in grid order; the runs' own cells when the stored grid
    no longer parses (the spec rules changed, or more cells than a new sweep may have)."""
    runs = {tuple(sorted(member["cell"].items())): member for member in members}
    try:
        cells = SweepSpec.from_stored(sweep.spec, sweep.axes).cells()
    except SpecError:
        return [(member["cell"], member) for member in members]
    return [(cell, runs.get(tuple(sorted(cell.items())))) for cell in cells]


def grid_axes(axes: dict[str, list]) -> tuple[str | None, list, str | None, list]:
    """The heatmap's axes: the first two swept keys other than seed (x, y), seed when nothing else varies."""
    keys = [key for key in axes if key != "seed"] or [key for key in axes]
    x_key = keys[0] if keys else None
    y_key = keys[1] if len(keys) > 1 else None
    return x_key, list(axes.get(x_key, [None])) if x_key else [None], y_key, list(axes.get(y_key, [None])) if y_key else [None]


def cancelled_at(session: Session, *, sweep_id: int) -> str | None:
    """When the sweep was cancelled (ISO 8601), or None."""
    sweep = session.get(Sweep, sweep_id)
    return sweep.cancelled_at.isoformat() if sweep is not None and sweep.cancelled_at else None


def sweep_view(session: Session, *, sweep_id: int, access: Access, step: int | None = None,
               score: str = PEAKY_THRES) -> dict[str, Any]:
    """The sweep page's data (JSON-ready, figures included); NotFound unless ``access`` sees the sweep.

    ``step`` None: each cell run's final figures (its summary); a step: each run's latest values at
    or before it (``core.population.grid_at``), SpecError (422, field ``step``) beyond the last
    snapshot. ``score``: the circuit heads' score the role heatmaps show. ``steps`` lists the
    sweep's snapshot steps, the positions of the page's slider.
    """
    access.require_sweep(sweep_id)
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"no sweep {sweep_id}")
    steps = population.snapshot_steps(session, sweep_id=sweep_id)
    population.check_step(step, steps)
    members = population.grid_members(session, sweep_id=sweep_id, score=score)
    at = None if step is None else population.grid_at(session, sweep_id=sweep_id, step=step, score=score,
                                                       members=members)
    empty = {"test_seq_acc": None, **{role: None for role in ROLES}}
    cells = []
    for cell, run in grid_order(sweep, members):
        values = empty if run is None else run["final"] if at is None else at[run["id"]]
        cells.append({"cell": cell, "label": cell_label(cell), **values, "run": None if run is None else {
            "id": run["id"], "name": run["name"], "status": run["status"], "step": run["step"],
            "total_steps": run["total_steps"], "url": access.url(f"/runs/{run['id']}")}})
    x_key, x_values, y_key, y_values = grid_axes(sweep.axes or {})
    column = {x: j for j, x in enumerate(x_values)}
    row = {y: i for i, y in enumerate(y_values)}
    when = "final" if step is None else f"step {step:,}"
    figures = []
    for metric, title in (("test_seq_acc", "test seq_acc"),
                          *((role, f"{ROLE_TITLES[role]} {score}") for role in ROLES)):
        groups: dict[tuple, list] = defaultdict(list)
        for cell in cells:
            groups[(cell["cell"].get(x_key), cell["cell"].get(y_key))].append(cell[metric])
        spreads = [[population.spread(groups[(x, y)]) if (x, y) in groups else None for x in x_values] for y in y_values]
        figures.append({"key": metric, "figure": F.grid_figure(
            x_values=x_values, y_values=y_values, cells=spreads, x_title=x_key or "", y_title=y_key or "",
            title=f"{title}, {when} (mean over seeds)")})
    links: list[list[str | None]] = [[None for _ in x_values] for _ in y_values]
    for cell in cells:  # the first run of each (x, y) cell, for a click on the heatmap
        x, y = cell["cell"].get(x_key), cell["cell"].get(y_key)
        if cell["run"] is not None and x in column and y in row:
            links[row[y]][column[x]] = links[row[y]][column[x]] or cell["run"]["url"]
    return {"id": sweep.id, "name": sweep.name, "preset": sweep.preset, "axes": sweep.axes,
            "kind": "seed set" if population.is_seed_set(sweep) else "grid",
            "created_at": sweep.created_at.isoformat() if sweep.created_at else None,
            "cancelled_at": sweep.cancelled_at.isoformat() if sweep.cancelled_at else None,
            "x": {"key": x_key, "values": x_values}, "y": {"key": y_key, "values": y_values},
            "step": step, "score": score, "steps": steps, "scores": list(SCORES),
            "cells": cells, "figures": figures, "links": links,
            "done": sum(1 for c in cells if c["run"] and c["run"]["status"] == "SUCCEEDED"),
            "finished": sum(1 for c in cells if c["run"] and c["run"]["status"] in FINISHED), "total": len(cells)}


FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED")


def sweeps_index(session: Session, *, access: Access) -> dict[str, Any]:
    """The sweeps index: every sweep ``access`` may see (``core.population.list_sweeps``), with links."""
    rows = population.list_sweeps(session, sweep_ids=access.sweep_ids)
    for row in rows:
        row["url"] = access.url(f"/sweeps/{row['id']}")
        row["seed_set_url"] = access.url(f"/seed-sets/{row['id']}") if row["kind"] == "seed set" else None
    return {"sweeps": rows, "total": len(rows)}
