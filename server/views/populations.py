"""Seed sets as the dashboard reads them: one seed set's bands and seeds, and two or more compared.

    data = populations.seed_set_view(session, sweep_id=7, access=access)            # /seed-sets/7, its JSON twin
    data = populations.compare_view(session, sweep_ids=[7, 9], access=access)       # /seed-sets/compare?sets=7,9
    data = populations.interventions_view(session, sweep_id=7, access=access)       # its panel "Interventions on every seed"

The numbers are ``core.population``'s (bands over seeds, emergence, steps to 0.99 and the ratio);
this adds the figure dicts (``server.figures_population``) and ``access.url`` links, so a shared
seed set links inside its share. An unknown sweep, or one the share may not see, is NotFound;
bad input (an empty seed set, a grid, fewer than two sets) is core's SpecError, a 422.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy.orm import Session

from core import population
from core.causal.population import population_intervention_results
from core.names import PEAKY_ABS, PEAKY_THRES, ROLE_TITLES, ROLES
from core.summary import EMERGED
from core.specs.errors import SpecError
from core.sweeps import SweepError
from server import figures_population as F
from server.access import Access
from server.deps import MAX_ID
from server.errors import NotFound

MAX_SETS = 6
SetsQuery = Annotated[str, Query(max_length=100, pattern=r"^[0-9]+(,[0-9]+)*$",
                                 description="seed set (sweep) ids, comma-separated: 7,9")]
ThresholdQuery = Annotated[float, Query(gt=0, le=1, description="the test accuracy whose first step is counted")]


def parse_sets(text: str) -> list[int]:
    """``"7,9"`` -> ``[7, 9]``; SpecError (field ``sets``) for an id out of range or too many sets."""
    ids = [int(part) for part in text.split(",")]
    if any(not 1 <= i <= MAX_ID for i in ids):
        raise SpecError([("sets", f"ids are 1..{MAX_ID} (got {text})")])
    if len(ids) > MAX_SETS:
        raise SpecError([("sets", f"compare at most {MAX_SETS} seed sets (got {len(ids)})")])
    return ids


def _seed_set(session: Session, sweep_id: int, access: Access, threshold: float) -> dict[str, Any]:
    access.require_sweep(sweep_id)
    try:
        data = population.seed_set(session, sweep_id=sweep_id, threshold=threshold)
    except SweepError:
        raise NotFound(f"no sweep {sweep_id}") from None
    for member in data["members"]:
        member["url"] = access.url(f"/runs/{member['run_id']}")
    data["url"] = access.url(f"/seed-sets/{sweep_id}")
    data["sweep_url"] = access.url(f"/sweeps/{sweep_id}")
    data["title"] = data["name"] or f"seed set {sweep_id}"
    return data


def seed_set_view(session: Session, *, sweep_id: int, access: Access,
                  threshold: float = population.THRESHOLD) -> dict[str, Any]:
    """The seed-set page's data: ``core.population.seed_set`` plus its figures (JSON-ready)."""
    data = _seed_set(session, sweep_id, access, threshold)
    curves = data["curves"]
    figures = {"fig-accuracy": F.bands_figure([("test seq_acc", curves["accuracy"])],
                                              title=f"test seq_acc over {data['seeds']} seeds", y_title="seq_acc")}
    for role in ROLES:
        figures[f"fig-{role}"] = F.bands_figure(
            [(score, curves[f"{role}/{score}"]) for score in (PEAKY_THRES, PEAKY_ABS)],
            title=f"{ROLE_TITLES[role]}: each seed's circuit head", y_title="score")
    figures["fig-emergence"] = F.distribution_figure(
        [(ROLE_TITLES[role], data["emergence"][role]["steps"], data["emergence"][role]["never"]) for role in ROLES],
        title="emergence step (peaky_thres first reaches 0.9)", x_title="step")
    data["figures"] = figures
    return data


def compare_view(session: Session, *, sweep_ids: Sequence[int], access: Access,
                 threshold: float = population.THRESHOLD) -> dict[str, Any]:
    """The compare page's data: each set's bands overlaid, its steps to ``threshold``, and the ratios."""
    for sweep_id in sweep_ids:
        access.require_sweep(sweep_id)
    try:
        data = population.compare_sets(session, sweep_ids=sweep_ids, threshold=threshold)
    except SweepError as exc:
        raise NotFound(str(exc)) from None
    for found in data["sets"]:
        found["url"] = access.url(f"/seed-sets/{found['id']}")
        found["title"] = found["name"] or f"seed set {found['id']}"
        for member in found["members"]:
            member["url"] = access.url(f"/runs/{member['run_id']}")
    named = [(f"#{s['id']} {s['title']}", s) for s in data["sets"]]
    data["figures"] = {
        "fig-accuracy": F.bands_figure([(name, s["curves"]["accuracy"]) for name, s in named],
                                       title="test seq_acc: mean, mean ± std, min-max over seeds", y_title="seq_acc"),
        "fig-iteration": F.bands_figure([(name, s["curves"]["iteration/peaky_thres"]) for name, s in named],
                                        title="iteration head peaky_thres", y_title="peaky_thres"),
        "fig-steps": F.distribution_figure(
            [(name, sorted(m["steps_to_threshold"] for m in s["members"] if m["steps_to_threshold"] is not None),
              s["steps_to_threshold"]["never"]) for name, s in named],
            title=f"steps to test seq_acc ≥ {threshold:g}, per seed", x_title="step"),
    }
    data["sets_param"] = ",".join(str(s["id"]) for s in data["sets"])
    return data


def interventions_view(session: Session, *, sweep_id: int, access: Access, step: int | None = None) -> dict[str, Any]:
    """The seed-set page's interventions panel: ``core.causal.population.population_intervention_results``
    with each series' members figure, one distribution figure over every series, and member links. A
    share link sees the jobs' status and progress, never a failure's text."""
    access.require_sweep(sweep_id)
    try:
        data = population_intervention_results(session, sweep_id=sweep_id, step=step)
    except SweepError:
        raise NotFound(f"no sweep {sweep_id}") from None
    for series in data["series"]:
        series["figure"] = F.intervention_members_figure(series, bar=EMERGED)
        for point in series["points"]:
            point["url"] = access.url(f"/runs/{point['run_id']}")
    for job in data["jobs"]:
        job["error"] = None if access.readonly else job["error"]
    data["figures"] = {"fig-iv-distribution": F.intervention_distribution_figure(data["series"])}
    data["live"] = sum(job["live"] for job in data["jobs"])
    return data
