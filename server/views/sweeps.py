"""A sweep as the dashboard reads it: every cell with its run, and the paper's scaling heatmaps.

    data = sweeps.sweep_view(session, sweep_id=4, access=access)       # what /sweeps/4 and /api/sweeps/4 show

Every cell carries its run's final test accuracy and each circuit head's peaky_thres; the heatmaps
put those over the two swept axes (mean over seeds), and ``links`` gives the run a click on each
heatmap cell opens. The grid is read with ``core.sweeps.sweep_cells``; links are ``access.url``
paths, so a shared sweep links inside its share.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from sqlalchemy.orm import Session

from core.db.models import Sweep
from core.names import PEAKY_THRES, ROLE_TITLES, ROLES
from core.sweeps import sweep_cells
from server import figures_compare as F
from server.access import Access
from server.errors import NotFound


def _mean(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None and not math.isnan(v)]
    return sum(real) / len(real) if real else None


def cell_values(run: dict | None) -> dict[str, float | None]:
    """A cell run's figures: final test seq_acc and each circuit head's final peaky_thres."""
    summary = (run or {}).get("summary") or {}
    values = {"test_seq_acc": ((summary.get("accuracy") or {}).get("test") or {}).get("seq_acc")}
    for role in ROLES:
        head = (summary.get("heads") or {}).get(role) or {}
        values[role] = (head.get("scores") or {}).get(PEAKY_THRES)
    return values


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


def sweep_view(session: Session, *, sweep_id: int, access: Access) -> dict[str, Any]:
    """The sweep page's data (JSON-ready, figures included); NotFound unless ``access`` sees the sweep."""
    access.require_sweep(sweep_id)
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"no sweep {sweep_id}")
    cells = []
    for cell in sweep_cells(session, sweep_id=sweep_id):
        run = cell["run"]
        cells.append({"cell": cell["cell"], "label": cell["label"], **cell_values(run), "run": None if run is None else {
            "id": run["id"], "name": run["name"], "status": run["status"], "step": run["step"],
            "total_steps": run["total_steps"], "url": access.url(f"/runs/{run['id']}")}})
    x_key, x_values, y_key, y_values = grid_axes(sweep.axes or {})
    figures = []
    links: list[list[str | None]] = [[None for _ in x_values] for _ in y_values]
    for metric, title in (("test_seq_acc", "final test seq_acc"),
                          *((role, f"{ROLE_TITLES[role]} peaky_thres") for role in ROLES)):
        groups: dict[tuple, list] = defaultdict(list)
        for cell in cells:
            groups[(cell["cell"].get(x_key), cell["cell"].get(y_key))].append(cell[metric])
        z = [[_mean(groups.get((x, y), [])) for x in x_values] for y in y_values]
        figures.append({"key": metric, "figure": F.grid_figure(
            x_values=x_values, y_values=y_values, z=z, x_title=x_key or "", y_title=y_key or "",
            title=f"{title} (mean over seeds)")})
    for cell in cells:  # the first run of each (x, y) cell, for a click on the heatmap
        x, y = cell["cell"].get(x_key), cell["cell"].get(y_key)
        if cell["run"] is not None and x in x_values and y in y_values:
            i, j = y_values.index(y), x_values.index(x)
            links[i][j] = links[i][j] or cell["run"]["url"]
    return {"id": sweep.id, "name": sweep.name, "preset": sweep.preset, "axes": sweep.axes,
            "created_at": sweep.created_at.isoformat() if sweep.created_at else None,
            "cancelled_at": sweep.cancelled_at.isoformat() if sweep.cancelled_at else None,
            "x": {"key": x_key, "values": x_values}, "y": {"key": y_key, "values": y_values},
            "cells": cells, "figures": figures, "links": links,
            "done": sum(1 for c in cells if c["run"] and c["run"]["status"] == "SUCCEEDED"), "total": len(cells)}
