"""Plotly figure dicts, built by pure functions from view data; one Jinja macro draws them.

    fig = figures.accuracy_figure(series, split="test")      # a dict: {"data": [...], "layout": {...}}
    {{ plot("acc-test", fig) }}                              # frontend_templates/partials/plot.html

No plotly import: a figure is plain JSON that plotly.js (served at /vendor/plotly.min.js) draws.
Plotly renders a subset of HTML in titles, trace names and hover text, so any text that may hold a
user's string goes through :func:`escape` first. The attention viewer's figure is built here for the
first paint and mirrored by ``static/js/attention.js`` when the step slider moves (same colours,
same overlay): keep the two in step.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

from core.names import ROLES
from core.summary import EMERGED, ROLE_TITLES
from server.views.runs import score_matrix, series
from server.views.schemas import Series, SnapshotView

FONT = {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 12}
ATTENTION_SCALE = [[0, "#f7fbff"], [0.15, "#c6dbef"], [0.5, "#4292c6"], [1, "#08306b"]]  # white (0) to dark blue (1)
OVERLAY = {"eoi_locator": "#dc2626", "iteration": "#f59e0b"}  # marker colours of the expected cells
LOG_TICKS = {"dtick": "D2", "tickformat": ".2~g"}  # a log axis: 1, 2, 5 of each decade, in full (0.5 0.2 0.1, not "5 2 1")
_LENGTH_KEY = re.compile(r"^(train|test)/seq_acc/L(\d+)$")


def escape(text: object) -> str:
    """Text safe for plotly's HTML-like labels (titles, trace names, hover); the one escape of every figure.

    ``< > &`` become named entities and quotes numeric ones (``&#34;`` ``&#39;``): no tag or attribute
    survives, and plotly decodes all of these back for display (it would show ``&quot;`` as is)."""
    return html.escape(str(text), quote=False).replace('"', "&#34;").replace("'", "&#39;")


def _layout(title: str, **extra) -> dict:
    layout = {"title": {"text": escape(title), "font": {"size": 14}}, "font": FONT, "height": 300,
              "margin": {"l": 55, "r": 20, "t": 40, "b": 45}, "hovermode": "closest",
              "legend": {"font": {"size": 11}}, "hoverlabel": {"namelength": -1}}  # whole trace names on hover
    layout.update(extra)
    return layout


def _line(series: Series, name: str, **style) -> dict:
    return {"type": "scatter", "mode": "lines", "x": list(series.steps), "y": list(series.values),
            "name": escape(name), **style}


def run_figures(rows: Sequence[tuple[str, int, float]], summary: Mapping, *, score: str) -> dict[str, dict]:
    """Every curve and matrix of the run page, by the id of its element (the page and its live update share it).

    ``rows`` are the run's (key, step, value) metrics (``server.views.runs.figure_rows``).
    """
    by_key = series(rows)
    out = {"fig-loss": loss_figure(by_key), "fig-acc-test": accuracy_figure(by_key, split="test"),
           "fig-acc-train": accuracy_figure(by_key, split="train"),
           "fig-peaky": peakiness_figure(by_key, (summary or {}).get("heads", {}))}
    for role in ROLES:
        out[f"fig-emergence-{role}"] = emergence_figure(score_matrix(rows, role=role, score=score), role=role, score=score)
    return out


def loss_figure(series: Mapping[str, Series]) -> dict:
    """Training loss (mean since the last report) against step, on a log axis."""
    data = [_line(series["train/loss"], "train loss", line={"color": "#2563eb"})] if "train/loss" in series else []
    return {"data": data, "layout": _layout("training loss", xaxis={"title": {"text": "step"}},
                                            yaxis={"type": "log", "title": {"text": "loss"}, **LOG_TICKS})}


def accuracy_figure(series: Mapping[str, Series], *, split: str) -> dict:
    """Sequence accuracy of one split: one line per input length, and the paper's mean (L = 4..max) in black."""
    by_length = sorted((int(m[2]), key) for key in series if (m := _LENGTH_KEY.match(key)) and m[1] == split)
    n = max(len(by_length), 1)
    data = [_line(series[key], f"L={length}", line={"width": 1, "color": _ramp(i / max(n - 1, 1))})
            for i, (length, key) in enumerate(by_length)]
    mean = f"{split}/seq_acc"
    if mean in series:
        data.append(_line(series[mean], "mean L=4..max", line={"width": 3, "color": "#111827"},
                          mode="lines+markers", marker={"size": 5}))  # the first evaluation shows as a dot
    return {"data": data, "layout": _layout(f"{split} accuracy by length", xaxis={"title": {"text": "step"}},
                                            yaxis={"range": [-0.02, 1.02], "title": {"text": "sequence accuracy"}})}


def _ramp(t: float) -> str:
    """A colour from light blue (short sequences) to dark purple (long ones)."""
    start, end = (125, 211, 252), (76, 29, 149)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(start, end))
    return f"rgb({r},{g},{b})"


def emergence_figure(matrix: Mapping, *, role: str, score: str) -> dict:
    """The emergence matrix of one role: rows L{l}H{h}, columns snapshot steps, colour = the score.

    ``matrix`` is ``server.views.runs.score_matrix`` output. Clicking a cell opens that head at that
    step in the attention viewer (static/js/run.js).
    """
    heads = list(matrix["heads"])
    data = [{"type": "heatmap", "x": list(matrix["steps"]), "y": heads, "z": matrix["z"], "zmin": 0, "zmax": 1,
             "colorscale": "Viridis", "colorbar": {"thickness": 10, "title": {"text": escape(score)}},
             "hovertemplate": "%{y} at step %{x}: %{z:.2f}<extra></extra>", "xgap": 1, "ygap": 1}]
    return {"data": data, "layout": _layout(f"{ROLE_TITLES.get(role, role)}: {score} by head and step",
                                            height=max(180, 60 + 22 * len(heads)),
                                            xaxis={"title": {"text": "step"}},
                                            yaxis={"autorange": "reversed", "type": "category"})}


def peakiness_figure(series: Mapping[str, Series], heads: Mapping[str, Mapping]) -> dict:
    """peaky_thres of each role's circuit head (the summary's pick) against step, with the 0.9 bar."""
    data = []
    for role in ROLES:
        info = heads.get(role)
        if not info:
            continue
        key = f"score/{role}/peaky_thres/{info['label']}"
        if key in series:
            data.append(_line(series[key], f"{ROLE_TITLES[role]} {info['label']}", line={"color": OVERLAY[role]},
                              mode="lines+markers", marker={"size": 5}))  # one score per snapshot: a first one shows
    shapes = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": EMERGED, "y1": EMERGED,
               "line": {"dash": "dot", "color": "#6b7280", "width": 1}}]
    return {"data": data, "layout": _layout("peakiness of the circuit heads", shapes=shapes,
                                            xaxis={"title": {"text": "step"}},
                                            yaxis={"range": [-0.02, 1.02], "title": {"text": "peaky_thres"}})}


def full_matrix(rows: Sequence[Sequence[float]]) -> list[list[float | None]]:
    """A ragged lower triangle (row q has q+1 values) -> a square matrix, None above the diagonal."""
    width = len(rows)
    return [list(row) + [None] * (width - len(row)) for row in rows]


def attention_figure(view: SnapshotView, *, layer: int, head: int, overlay: bool = True) -> dict:
    """One head's attention on one probe sequence: query rows, key columns, token labels on both axes,
    and the cells the theory expects for that layer's role as open markers."""
    z = full_matrix(view.attention[layer][head])
    labels = [escape(label) for label in view.labels]
    positions = list(range(len(labels)))
    hover = [[f"query {q} {labels[q]}<br>key {k} {labels[k]}" for k in positions] for q in positions]
    data = [{"type": "heatmap", "z": z, "x": positions, "y": positions, "zmin": 0, "zmax": 1,
             "colorscale": ATTENTION_SCALE, "text": hover, "hoverongaps": False,
             "hovertemplate": "%{text}<br>weight %{z:.3f}<extra></extra>", "colorbar": {"thickness": 10}}]
    if overlay:
        for cells in view.expected:
            if cells.layer != layer or not cells.cells:
                continue
            data.append({"type": "scatter", "mode": "markers", "name": escape(f"expected: {cells.title}"),
                         "x": [k for _, k in cells.cells], "y": [q for q, _ in cells.cells],
                         "marker": {"symbol": "square-open", "size": 11, "color": OVERLAY[cells.role],
                                    "line": {"width": 2}}, "hoverinfo": "skip"})
    axis = {"tickmode": "array", "tickvals": positions, "ticktext": labels,
            "tickfont": {"size": 10}, "zeroline": False, "showgrid": False}
    return {"data": data, "layout": _layout(f"L{layer}H{head} at step {view.step:,}", height=460,
                                            xaxis={**axis, "title": {"text": "key"}, "tickangle": -60},
                                            yaxis={**axis, "title": {"text": "query"}, "autorange": "reversed"},
                                            showlegend=True, legend={"orientation": "h", "y": -0.25})}
