"""Plotly figure dicts of the population views: bands over seeds, emergence and steps-to-accuracy
distributions, and the sweep heatmap with its spread on hover.

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
              "xaxis": {"title": {"text": x_title}}, "yaxis": {"title": {"text": y_title}},
              "legend": {"orientation": "h", "y": -0.25, "font": {"size": 11}}}
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
