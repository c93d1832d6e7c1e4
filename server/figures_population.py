"""Plotly figure dicts of the population views: bands over seeds, emergence and steps-to-accuracy
distributions, the sweep heatmap with its spread on hover, and one intervention on every member (each
member's accuracy against its head's peakiness, and the spread over members).

Pure functions over ``core.population``'s numbers (nothing reads the database). A *band* is drawn
as three layers per population: the min-max range (faint), mean +- std (stronger) and the mean
(a line); plotly fills each upper edge down to the trace before it (``fill: "tonexty"``). User
strings (set names) are escaped before they enter a figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from server.figures import FONT, escape

COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")
TEXT_CELLS = 400  # a grid with more cells than this shows its values on hover only, so 64 x 64 stays readable


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(title: str, *, x_title: str = "step", y_title: str = "", y_range: Sequence[float] | None = None,
            height: int = 300) -> dict:
    layout = {"title": {"text": title, "font": {"size": 13}}, "font": FONT, "height": height,
              "margin": {"l": 55, "r": 15, "t": 36, "b": 45}, "hovermode": "x unified",
              "xaxis": {"title": {"text": x_title, "standoff": 4}}, "yaxis": {"title": {"text": y_title}},
              # below the axis title, not on it (yanchor top: the legend hangs from y, however many rows)
              "legend": {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top", "font": {"size": 11}}}
    if y_range is not None:
        layout["yaxis"]["range"] = list(y_range)
    return layout


def band_traces(band: Mapping[str, Any], *, name: str, colour: str) -> list[dict]:
    """The five traces of one band: min, max (filled to min), mean - std, mean + std (filled), mean."""
    steps = band["steps"]

    def shifted(sign: int) -> list[float | None]:
        return [None if m is None else m + sign * s for m, s in zip(band["mean"], band["std"])]

    edge = {"type": "scatter", "mode": "lines", "x": steps, "line": {"width": 0, "color": colour},
            "showlegend": False, "hoverinfo": "skip"}
    return [
        {**edge, "y": band["min"], "name": f"{name} min"},
        {**edge, "y": band["max"], "name": f"{name} min-max", "fill": "tonexty", "fillcolor": _rgba(colour, 0.12)},
        {**edge, "y": shifted(-1), "name": f"{name} mean - std"},
        {**edge, "y": shifted(+1), "name": f"{name} mean +- std", "fill": "tonexty", "fillcolor": _rgba(colour, 0.3)},
        {"type": "scatter", "mode": "lines", "x": steps, "y": band["mean"], "name": f"{name} mean",
         "line": {"color": colour, "width": 2}, "customdata": [[n] for n in band["n"]],
         "hovertemplate": "mean %{y:.3f} (n=%{customdata[0]})<extra>" + name + "</extra>"},
    ]


def bands_figure(bands: Sequence[tuple[str, Mapping[str, Any]]], *, title: str, y_title: str = "",
                 y_range: Sequence[float] | None = (0, 1.02)) -> dict:
    """One or more bands overlaid: ``bands`` is ``[(name, band), ...]`` (names escaped here)."""
    data = []
    for i, (name, band) in enumerate(bands):
        data += band_traces(band, name=escape(name), colour=COLOURS[i % len(COLOURS)])
    return {"data": data, "layout": _layout(escape(title), y_title=y_title, y_range=y_range)}


def distribution_figure(groups: Sequence[tuple[str, Sequence[float], int]], *, title: str, x_title: str) -> dict:
    """Horizontal box plots with every point: ``groups`` is ``[(name, values, never), ...]``; ``never``
    (members with no value: no emergence, never reached the threshold) is said in the group's label."""
    data = []
    for i, (name, values, never) in enumerate(groups):
        label = escape(name) + (f" ({never} never)" if never else "")
        data.append({"type": "box", "x": list(values), "name": label, "orientation": "h", "boxpoints": "all",
                     "jitter": 0.4, "pointpos": 0, "marker": {"color": COLOURS[i % len(COLOURS)], "size": 5},
                     "hovertemplate": "step %{x}<extra>" + label + "</extra>"})
    layout = _layout(escape(title), x_title=x_title, height=120 + 50 * max(1, len(groups)))
    layout.update(hovermode="closest", showlegend=False)
    layout["yaxis"]["automargin"] = True  # the longest set name decides the left margin
    return {"data": data, "layout": layout}


def grid_figure(*, x_values: Sequence[Any], y_values: Sequence[Any], cells: Sequence[Sequence[Mapping | None]],
                x_title: str, y_title: str, title: str, zrange: tuple[float, float] = (0.0, 1.0)) -> dict:
    """A sweep heatmap of the mean over seeds, the spread on hover: ``cells[i][j]`` is the
    ``core.population.spread`` of row y_i, column x_j (None: no run there). Values are written in
    the cells only while the grid has at most ``TEXT_CELLS`` of them."""
    label = lambda value: "all" if value is None else str(value)  # noqa: E731 - an axis not swept: one row/column
    z, hover, text = [], [], []
    for row in cells:
        z.append([None if c is None else c["mean"] for c in row])
        text.append(["" if c is None or c["mean"] is None else f"{c['mean']:.2f}" for c in row])
        hover.append(["no value" if c is None or c["mean"] is None else
                      f"mean {c['mean']:.3f} ± {c['std']:.3f} (std)<br>min {c['min']:.3f}, max {c['max']:.3f}"
                      f"<br>n = {c['n']}" for c in row])
    small = len(x_values) * len(y_values) <= TEXT_CELLS
    trace = {"type": "heatmap", "x": [label(x) for x in x_values], "y": [label(y) for y in y_values], "z": z,
             "zmin": zrange[0], "zmax": zrange[1], "colorscale": "Viridis", "customdata": hover,
             "hovertemplate": f"{escape(x_title)} %{{x}}<br>{escape(y_title)} %{{y}}<br>%{{customdata}}<extra></extra>",
             "xgap": 1 if small else 0, "ygap": 1 if small else 0}
    if small:
        trace.update(text=text, texttemplate="%{text}")
    tick = {"type": "category", "tickfont": {"size": 9 if small else 8}}
    layout = {"title": {"text": title, "font": {"size": 13}}, "font": FONT,
              "height": 340 if small else max(340, 12 * len(y_values) + 120),
              "margin": {"l": 70, "r": 10, "t": 36, "b": 50},
              "xaxis": {**tick, "title": {"text": escape(x_title)}}, "yaxis": {**tick, "title": {"text": escape(y_title)}}}
    return {"data": [trace], "layout": layout}


# ---------------------------------------------------------------- one intervention on every member

ACCURACY_RANGE = (-0.06, 1.06)  # a member at accuracy 0.00 sits clear of the axis, never hidden under it
BASELINE_COLOUR = "#94a3b8"


def _point_hover(point: Mapping[str, Any]) -> str:
    x = point["x"]
    scores = ", ".join(f"{score} {x[score]:.2f}" for score in ("peaky_thres", "peaky_abs") if x.get(score) is not None)
    return (f"{escape(point['member'])}, step {point['step']}<br>{escape(x.get('label') or 'no head')}: "
            f"{scores or 'no score recorded'}<br>accuracy {point['accuracy']:.3f} (baseline "
            + (f"{point['baseline']:.3f})" if point["baseline"] is not None else "n/a)"))


def intervention_members_figure(series: Mapping[str, Any], *, bar: float) -> dict:
    """Each member as a point: x = its targeted head's peaky_thres at the step tested (its EoI
    locator's when several heads were targeted), y = its accuracy under the intervention, a hollow
    grey point at its untouched baseline joined to it. The dashed line is the circuit bar ``bar``."""
    points = [p for p in series["points"] if p["accuracy"] is not None]
    xs = [p["x"]["peaky_thres"] for p in points]
    joins_x, joins_y = [], []
    for x, p in zip(xs, points):
        joins_x += [x, x, None]
        joins_y += [p["baseline"], p["accuracy"], None]
    hover = [_point_hover(p) for p in points]
    seeds = ["" if p["seed"] is None else str(p["seed"]) for p in points]
    data = [
        {"type": "scatter", "mode": "lines", "x": joins_x, "y": joins_y, "name": "baseline -> intervened",
         "line": {"color": "#cbd5e1", "width": 1}, "hoverinfo": "skip", "showlegend": False},
        {"type": "scatter", "mode": "markers", "x": xs, "y": [p["baseline"] for p in points], "name": "baseline (untouched)",
         "marker": {"color": "white", "size": 8, "line": {"color": BASELINE_COLOUR, "width": 1.5}},
         "customdata": hover, "hovertemplate": "%{customdata}<extra>baseline</extra>"},
        {"type": "scatter", "mode": "markers+text", "x": xs, "y": [p["accuracy"] for p in points],
         "name": "intervened", "text": seeds, "textposition": "middle right", "textfont": {"size": 9},
         "marker": {"color": COLOURS[0], "size": 9, "line": {"color": "#1e1b4b", "width": 1}},
         "customdata": hover, "hovertemplate": "%{customdata}<extra>intervened</extra>"},
    ]
    unplaced = sum(1 for x in xs if x is None)
    title = escape(series["title"]) + (f" ({unplaced} without a score at that step)" if unplaced else "")
    x_title = "peaky_thres of " + ("the targeted head" if series["slot"] != "circuit" else "the EoI locator")
    layout = _layout(title, x_title=x_title + " (labels: seeds)", y_title="accuracy (L = 4..max)",
                     y_range=ACCURACY_RANGE, height=340)
    layout.update(hovermode="closest", shapes=[{"type": "line", "xref": "x", "yref": "paper", "x0": bar, "x1": bar,
                                                "y0": 0, "y1": 1, "line": {"color": "#dc2626", "dash": "dash", "width": 1}}])
    layout["xaxis"]["range"] = [-0.03, 1.05]
    return {"data": data, "layout": layout}


def intervention_distribution_figure(series: Sequence[Mapping[str, Any]]) -> dict:
    """Per series, a box with every member's point (a strip): the untouched baseline beside the
    intervened accuracy, so each intervention's spread over members reads at a glance."""
    names, baseline, intervened, hover = [], [], [], []
    for entry in series:
        for p in entry["points"]:
            names.append(_tick(entry["title"]))
            baseline.append(p["baseline"])
            intervened.append(p["accuracy"])
            hover.append(_point_hover(p))
    box = {"type": "box", "x": names, "boxpoints": "all", "jitter": 0.5, "pointpos": 0, "customdata": hover}
    data = [{**box, "y": baseline, "name": "baseline (untouched)", "marker": {"color": BASELINE_COLOUR, "size": 6},
             "hovertemplate": "%{customdata}<extra>baseline</extra>"},
            {**box, "y": intervened, "name": "intervened", "marker": {"color": COLOURS[0], "size": 7},
             "hovertemplate": "%{customdata}<extra>intervened</extra>"}]
    layout = _layout("accuracy over members: baseline and intervened", x_title="", y_title="accuracy (L = 4..max)",
                     y_range=ACCURACY_RANGE, height=340)
    layout.update(hovermode="closest", boxmode="group")
    layout["xaxis"].update(automargin=True, tickangle=0)
    layout["legend"]["y"] = -0.45  # below the labels' four lines
    return {"data": data, "layout": layout}


def _tick(title: str) -> str:
    """A series title as a category label of short lines (``pattern/ideal<br>each member's<br>EoI locator``),
    so several sit side by side, level, instead of long rotated labels running into each other."""
    lines = []
    for part in title.split(" @ "):  # the intervention, then its target, each on lines of its own
        lines.append("")
        for word in part.split():
            lines[-1:] = [f"{lines[-1]} {word}".strip()] if len(lines[-1]) + len(word) < 18 else [lines[-1], word]
    return "<br>".join(escape(line) for line in lines)
