"""Runs side by side, as ``/compare?runs=3,5[,8]`` and its JSON twin ``GET /api/compare`` show them.

    data = compare.compare_view(session, access=access, run_ids=[3, 5], step=None, link="step",
                                layer=None, head=None, probe=None)

For every run the same probe sequence (by index in the probe set) and the same layer/head, at
linked steps: ``link=step`` takes the snapshot nearest to the same optimizer step, ``link=fraction``
the one nearest to the same fraction of training (the first run is the reference; ``step`` is
its step, by default its last snapshot). Also the signed difference map of the first two runs
(A - B), only where both read the same input sequence (else ``why_no_difference`` says why), their curves overlaid (test seq_acc, train loss, each circuit head's peaky_thres), and the
spec keys whose values differ. Figures are plotly dicts from ``server.figures_compare``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.db import crud
from core.db.models import Run
from core.names import LOSS, PEAKY_THRES, ROLE_TITLES, ROLES, SEQ_ACC, TEST, TRAIN, metric_key, score_key
from core.specs.errors import SpecError
from core.summary import run_summary
from server import figures_compare as F
from server.access import Access
from server.deps import MAX_ID, ascii_id
from server.errors import NotFound
from server.figures import full_matrix
from server.views import runs as views

MAX_RUNS = 4
CURVES = ((metric_key(TEST, SEQ_ACC), "test seq_acc", (0, 1.02)), (metric_key(TRAIN, LOSS), "train loss", None))


def parse_run_ids(text: str) -> list[int]:
    """``"3,5,8"`` -> [3, 5, 8]; SpecError (422 naming ``runs``) unless 2..4 distinct ids, each in
    ASCII digits (``server.deps.ascii_id``: no sign, point or other digits; spaces around commas are fine)."""
    try:
        ids = [ascii_id(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError([("runs", "runs is a comma-separated list of run ids")]) from None
    ids = list(dict.fromkeys(ids))
    if not 2 <= len(ids) <= MAX_RUNS or not all(1 <= i <= MAX_ID for i in ids):
        raise SpecError([("runs", f"name 2 to {MAX_RUNS} distinct run ids")])
    return ids


def _runs(session: Session, access: Access, run_ids: list[int]) -> list[Run]:
    runs = []
    for run_id in run_ids:
        access.require_run(run_id)
        run = crud.get_run(session, run_id=run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        runs.append(run)
    return runs


def _default_head(run: Run, summary: dict) -> tuple[int, int]:
    head = summary.get("heads", {}).get("iteration")
    if head:
        return int(head["layer"]), int(head["head"])
    return max(int(run.spec.get("n_layers", 1)) - 1, 0), 0


def _panel(session: Session, run: Run, *, step: int | None, probe: int, layer: int, head: int) -> dict:
    base = {"run_id": run.id, "title": F.run_title(run.id, run.name), "step": step,
            "total_steps": run.total_steps}
    if step is None:
        return {**base, "error": "no snapshot yet"}
    try:  # the run page's own view of the snapshot: one place reads, unpacks and slices it
        lengths = views.snapshot_lengths(session, run_id=run.id, step=step)
        index = len(lengths) - 1 if probe < 0 else min(probe, len(lengths) - 1)  # default: the longest probe
        view = views.snapshot_view(session, run_id=run.id, step=step, probe=index)
    except NotFound:
        return {**base, "error": "no snapshot yet"}
    if layer >= view.n_layers or head >= view.n_heads:
        return {**base, "error": f"this run has no head L{layer}H{head}"}
    return {**base, "probe": index, "length": view.length, "labels": view.labels, "tokens": view.tokens,
            "z": full_matrix(view.attention[layer][head])}


def _curves(session: Session, runs: list[Run], summaries: dict[int, dict]) -> list[dict]:
    figures = []
    for key, title, y_range in CURVES:
        series = []
        for i, run in enumerate(runs):
            rows = crud.get_metrics(session, run_id=run.id, keys=[key])
            series.append({"name": F.run_title(run.id, run.name), "x": [r[1] for r in rows],
                           "y": [r[2] for r in rows], "colour": F.RUN_COLOURS[i % len(F.RUN_COLOURS)]})
        figures.append({"key": key, "figure": F.curves_figure(series, title=title, y_range=y_range)})
    for role in ROLES:
        series = []
        for i, run in enumerate(runs):
            head = summaries[run.id].get("heads", {}).get(role)
            if not head:
                continue
            rows = crud.get_metrics(session, run_id=run.id,
                                    keys=[score_key(role, PEAKY_THRES, head["layer"], head["head"])])
            series.append({"name": f"{F.run_title(run.id, run.name)} L{head['layer']}H{head['head']}",
                           "x": [r[1] for r in rows], "y": [r[2] for r in rows],
                           "colour": F.RUN_COLOURS[i % len(F.RUN_COLOURS)]})
        figures.append({"key": f"peaky_thres/{role}",
                        "figure": F.curves_figure(series, title=f"{ROLE_TITLES[role]} peaky_thres (circuit head of each run)",
                                                  y_range=(0, 1.02))})
    return figures


def compare_view(session: Session, *, access: Access, run_ids: list[int], step: int | None, link: str,
                 layer: int | None, head: int | None, probe: int | None) -> dict[str, Any]:
    """Everything the compare view shows, as JSON-ready data (figures included)."""
    runs = _runs(session, access, run_ids)
    steps = {run.id: crud.list_snapshot_steps(session, run_id=run.id) for run in runs}
    reference = runs[0]
    if step is None:
        step = steps[reference.id][-1] if steps[reference.id] else 0
    summaries = {run.id: run_summary(session, run) for run in runs}  # a live run's summary so far
    default_layer, default_head = _default_head(reference, summaries[reference.id])
    layer = default_layer if layer is None else layer
    head = default_head if head is None else head
    probe = -1 if probe is None else probe
    panels = []
    for run in runs:
        linked = F.linked_step(steps[run.id], step=step, reference_total=reference.total_steps or 1,
                               total=run.total_steps or 1, mode=link)
        panels.append(_panel(session, run, step=linked, probe=probe, layer=layer, head=head))
    diff, why_no_difference = None, _why_no_difference(panels[0], panels[1])
    a, b = panels[0], panels[1]
    if why_no_difference is None:
        z = F.difference(a["z"], b["z"])
        diff = {"max_abs": float(np.nanmax(np.abs(np.asarray(z, dtype=np.float64)))) if z else 0.0,
                "figure": F.difference_figure(z, a["labels"], f"A - B (#{a['run_id']} minus #{b['run_id']}) · step {a['step']} vs {b['step']}")}
    for panel in panels:  # each map travels once, inside its figure
        panel["steps"] = steps[panel["run_id"]]
        if "z" in panel:
            panel["figure"] = F.attention_figure(panel.pop("z"), panel["labels"],
                                                 f"{panel['title']} · L{layer}H{head} · step {panel['step']}")
    return {
        "runs": [{"id": run.id, "name": run.name, "status": run.status, "total_steps": run.total_steps,
                  "url": access.url(f"/runs/{run.id}"), "verdict": summaries[run.id].get("verdict")} for run in runs],
        "step": step, "link": link, "layer": layer, "head": head, "probe": panels[0].get("probe"),
        "same_probe": _same_probe(panels),
        "panels": panels, "difference": diff, "why_no_difference": why_no_difference,
        "curves": _curves(session, runs, summaries),
        "config_diff": F.config_diff([run.spec for run in runs]),
    }


def _why_no_difference(a: dict, b: dict) -> str | None:
    """Why the first two runs get no A - B map, or None when they have one: a difference of attention
    means something only where both runs read the very same input sequence (same tokens), such as
    the same probe of two seeds; a parity run against a polynomial one has none to subtract."""
    for panel in (a, b):
        if "z" not in panel:
            return f"no A - B: #{panel['run_id']} has no map here ({panel.get('error', 'no snapshot yet')})"
    if a["tokens"] != b["tokens"]:
        return (f"no A - B: the two runs read different input sequences here (#{a['run_id']}: "
                f"{' '.join(a['labels'])}; #{b['run_id']}: {' '.join(b['labels'])}); a difference of "
                "attention is drawn only where both read the same sequence")
    return None


def _same_probe(panels: list[dict]) -> bool:
    tokens = [panel.get("tokens") for panel in panels]
    return all(t is not None and t == tokens[0] for t in tokens)
