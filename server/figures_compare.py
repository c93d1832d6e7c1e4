"""Pure functions for the compare view: linked steps, attention blocks, differences, figure dicts.

Everything here takes plain numbers and lists and returns plain JSON-ready values (plotly figure
dicts rendered by ``static/js/compare.js``; the sweep heatmaps are ``server.figures_population``'s); nothing reads the database.
User strings (run names) are HTML-escaped before they enter a figure, because plotly renders a
subset of HTML in titles, legends and hover text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from server.figures import ATTENTION_SCALE, escape

RUN_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")
DIVERGING = "RdBu"  # plotly's RdBu runs blue (low) to red (high): red where A attends more, blue where B does


def run_title(run_id: int, name: str | None) -> str:
    return escape(f"#{run_id} {name}" if name else f"#{run_id}")


def linked_step(steps: Sequence[int], *, step: int, reference_total: int, total: int, mode: str) -> int | None:
    """The snapshot step of a run that matches ``step`` of the reference run.

    ``mode="step"``: the same optimizer step; ``mode="fraction"``: the same fraction of training
    (step / reference_total of this run's total). Either way the nearest recorded snapshot, the
    earlier one on a tie; None when the run has no snapshot.
    """
    if not steps:
        return None
    target = float(step)
    if mode == "fraction" and reference_total > 0:
        target = step / reference_total * total
    return min(steps, key=lambda s: (abs(s - target), s))


def _causal(block: np.ndarray) -> list[list[float | None]]:
    return [[float(block[i, j]) if j <= i else None for j in range(block.shape[1])] for i in range(block.shape[0])]


def difference(a: Sequence[Sequence[float | None]], b: Sequence[Sequence[float | None]]) -> list[list[float | None]] | None:
    """The signed map A - B, or None when the two blocks differ in shape (different probe lengths)."""
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)  # None -> nan
    if left.shape != right.shape:
        return None
    return _causal(np.round(left - right, 3))


def _heatmap_layout(title: str, labels: Sequence[str]) -> dict:
    axis = {"tickmode": "array", "tickvals": list(range(len(labels))), "ticktext": list(labels),
            "tickfont": {"size": 9}}
    return {"title": {"text": title, "font": {"size": 13}}, "margin": {"l": 60, "r": 10, "t": 36, "b": 60},
            "xaxis": {**axis, "title": {"text": "key"}},
            "yaxis": {**axis, "title": {"text": "query"}, "autorange": "reversed"}, "height": 360}


def attention_figure(z: Sequence[Sequence[float]], labels: Sequence[str], title: str) -> dict:
    """Heatmap of attention weights (0..1): query rows, key columns."""
    trace = {"type": "heatmap", "z": z, "zmin": 0, "zmax": 1, "colorscale": ATTENTION_SCALE,
             "hovertemplate": "query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"}
    return {"data": [trace], "layout": _heatmap_layout(title, labels)}


def difference_figure(z: Sequence[Sequence[float]], labels: Sequence[str], title: str) -> dict:
    """Heatmap of A - B on a diverging scale centred on zero (-1..1): red where A attends more."""
    trace = {"type": "heatmap", "z": z, "zmin": -1, "zmax": 1, "zmid": 0, "colorscale": DIVERGING,
             "hovertemplate": "query %{y}<br>key %{x}<br>A - B %{z:+.3f}<extra></extra>"}
    return {"data": [trace], "layout": _heatmap_layout(title, labels)}


def curves_figure(series: Sequence[Mapping[str, Any]], *, title: str, x_title: str = "step",
                  y_range: Sequence[float] | None = None) -> dict:
    """Overlaid lines; each series is ``{"name", "x", "y", "colour"?, "dash"?}`` (names already safe)."""
    data = []
    for i, line in enumerate(series):
        y = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in line["y"]]
        data.append({"type": "scatter", "mode": "lines+markers", "name": line["name"], "x": list(line["x"]), "y": y,
                     "marker": {"size": 4}, "line": {"color": line.get("colour", RUN_COLOURS[i % len(RUN_COLOURS)]),
                                                     "dash": line.get("dash", "solid")}})
    layout = {"title": {"text": title, "font": {"size": 13}}, "height": 340,  # the legend sits below the axis title
              "margin": {"l": 50, "r": 10, "t": 36, "b": 100}, "xaxis": {"title": {"text": x_title, "standoff": 4}},
              "legend": {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"}, "hoverlabel": {"namelength": -1}}
    if y_range is not None:
        layout["yaxis"] = {"range": list(y_range)}
    return {"data": data, "layout": layout}


def config_diff(specs: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Only the spec keys whose values differ between runs: ``[{"key", "values": [per run]}]``, sorted."""
    keys = sorted({key for spec in specs for key in spec})
    rows = []
    for key in keys:
        values = [spec.get(key) for spec in specs]
        if any(value != values[0] for value in values[1:]):
            rows.append({"key": key, "values": values})
    return rows
