"""Seed sets over JSON: one seed set as distributions over its seeds, and seed sets compared.

    GET /api/seed-sets/7                      -> bands (mean, std, min-max, quartiles) of test accuracy and of each
                                                 role's circuit head (peaky_thres, peaky_abs) at every step, the
                                                 emergence steps per role, and the seeds' table
    GET /api/seed-sets/7/interventions[?step=20]
                                              -> each intervention run on every seed (POST /api/sweeps/7/interventions):
                                                 per seed its intervened and baseline accuracy beside its circuit
                                                 heads' peakiness, the spreads, the figures, the jobs and their progress
    GET /api/seed-sets/compare?sets=7,9[&threshold=0.99]
                                              -> each set's bands and steps to the threshold per seed (median,
                                                 quartiles, min-max), and the first set's median over each set's

A seed set is a sweep whose only axis is ``seed`` (``circuitboard train --seeds 0-99``, or
``POST /api/sweeps`` with ``seeds`` alone). An unknown sweep is 404; an empty seed set, a grid
asked for as a seed set, or fewer than two sets to compare is 422 naming the field. The data is
``server.views.populations``, the same as the pages'.
"""

from __future__ import annotations

from fastapi import APIRouter

from core.population import THRESHOLD
from server.deps import CurrentAccess, ReadSession, StepQuery, SweepId
from server.views import populations as views

read = APIRouter(tags=["seed sets"])
write = APIRouter()


@read.get("/api/seed-sets/compare")
def compare_seed_sets(sets: views.SetsQuery, session: ReadSession, access: CurrentAccess,
                      threshold: views.ThresholdQuery = THRESHOLD) -> dict:
    return views.compare_view(session, sweep_ids=views.parse_sets(sets), access=access, threshold=threshold)


@read.get("/api/seed-sets/{sweep_id}")
def get_seed_set(sweep_id: SweepId, session: ReadSession, access: CurrentAccess,
                 threshold: views.ThresholdQuery = THRESHOLD) -> dict:
    return views.seed_set_view(session, sweep_id=sweep_id, access=access, threshold=threshold)


@read.get("/api/seed-sets/{sweep_id}/interventions", summary="Interventions run on every member, as distributions")
def get_seed_set_interventions(sweep_id: SweepId, session: ReadSession, access: CurrentAccess,
                               step: StepQuery = None) -> dict:
    """Any sweep's members (a grid's points carry their cell); ``step``: the results at that step only
    (default: each member's latest step tested)."""
    return views.interventions_view(session, sweep_id=sweep_id, access=access, step=step)
