"""Interventions on a whole seed set over HTTP: POST /api/sweeps/{id}/interventions queues one job per
member (owner only, CSRF), bad input is a 422 naming the field with nothing queued, an unknown sweep
404; GET /api/seed-sets/{id}/interventions reads the results back as a distribution with its figures,
also under a share link (which never launches, and never sees a failure's text)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.causal.results import put_result
from core.db import crud, shares
from core.db.models import Job, Run
from core.db.session import make_engine, session_scope
from core.names import CHECKPOINT_WEIGHTS
from tests.population_support import seed_set_rows

STEPS = [0, 500, 1000]
SHAPE = {"n_layers": 2, "n_heads": 2, "max_len": 4}
IDEAL = {"kind": "pattern", "variants": ["ideal"], "steps": 1000, "rows_per_len": 4}


@pytest.fixture
def engine(served_url):
    engine = make_engine(served_url)
    yield engine
    engine.dispose()


@pytest.fixture
def seeds(engine) -> tuple[int, list[int]]:
    """(sweep id, member run ids) of a synthetic seed set of 3 with weights checkpoint rows at STEPS."""
    with session_scope(engine) as session:
        sweep_id = seed_set_rows(session, seeds=range(3), steps=STEPS, spec=SHAPE, name="three seeds")
        runs = list(session.scalars(select(Run.id).where(Run.sweep_id == sweep_id).order_by(Run.id)))
        for run_id in runs:
            for step in STEPS:
                crud.put_checkpoint(session, run_id=run_id, step=step, kind=CHECKPOINT_WEIGHTS, data=b"\0")
    return sweep_id, runs


def intervene_jobs(engine) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(select(func.count(Job.id)).where(Job.kind == "intervene"))


def test_one_request_queues_one_job_per_member(app_client, csrf, engine, seeds):
    sweep_id, runs = seeds
    response = app_client.post(f"/api/sweeps/{sweep_id}/interventions", json=IDEAL, headers=csrf)
    assert response.status_code == 201, response.text
    body = response.json()
    assert [job["run_id"] for job in body["jobs"]] == runs and body["skipped"] == []
    assert body["url"] == f"/seed-sets/{sweep_id}"
    with session_scope(engine, readonly=True) as session:
        stored = [session.get(Job, job["job_id"]) for job in body["jobs"]]
        assert [(job.status, job.payload["population"], job.payload["spec"]["variants"]) for job in stored] == [
            ("QUEUED", sweep_id, ["ideal"])] * 3
    read = app_client.get(f"/api/seed-sets/{sweep_id}/interventions").json()
    assert sorted(job["id"] for job in read["jobs"]) == sorted(job["job_id"] for job in body["jobs"])
    assert read["live"] == 3 and read["series"] == []


@pytest.mark.parametrize("body, field", [
    ({"kind": "scramble"}, "kind"),
    ({"kind": "probe", "layer": 0}, "kind"),
    ({**IDEAL, "heads": ["L9H9"]}, "heads"),
    ({**IDEAL, "steps": 777}, "steps"),
    ({**IDEAL, "colour": "red"}, "colour"),
    ({**IDEAL, "skip_missing": 3}, "skip_missing"),
])
def test_bad_input_is_422_naming_the_field_with_nothing_queued(app_client, csrf, engine, seeds, body, field):
    sweep_id, _ = seeds
    before = intervene_jobs(engine)
    response = app_client.post(f"/api/sweeps/{sweep_id}/interventions", json=body, headers=csrf)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert field in [e["field"] for e in errors] and all({"field", "loc", "msg", "type"} <= set(e) for e in errors), errors
    assert intervene_jobs(engine) == before


def test_an_unknown_sweep_is_404_and_a_post_without_csrf_403(app_client, csrf, engine, seeds):
    sweep_id, _ = seeds
    before = intervene_jobs(engine)
    missing = app_client.post("/api/sweeps/987654/interventions", json=IDEAL, headers=csrf)
    assert (missing.status_code, missing.json()["detail"]) == (404, "no sweep 987654")
    assert app_client.get("/api/seed-sets/987654/interventions").status_code == 404
    assert app_client.post(f"/api/sweeps/{sweep_id}/interventions", json=IDEAL).status_code == 403
    assert intervene_jobs(engine) == before


def test_results_read_back_with_one_point_per_member_and_a_share_link_never_launches(app_client, csrf, engine, seeds):
    sweep_id, runs = seeds
    with session_scope(engine) as session:
        for run_id, accuracy in zip(runs, (1.0, 0.0, 0.5)):
            head = session.get(Run, run_id).summary["heads"]["eoi_locator"]["label"]
            put_result(session, run_id=run_id, step=1000, intervention="pattern/ideal", target=head, spec=IDEAL,
                       result={"mean": accuracy, "baseline": {"mean": 1.0}})
        failed = submit_failed(session, runs[0], sweep_id)
        _, token = shares.create(session, kind="sweep", target={"sweep_id": sweep_id})
    own = app_client.get(f"/api/seed-sets/{sweep_id}/interventions").json()
    (series,) = own["series"]
    assert [p["accuracy"] for p in series["points"]] == [1.0, 0.0, 0.5]
    assert series["accuracy"]["min"] == 0.0 and series["baseline"]["mean"] == 1.0
    intervened = series["figure"]["data"][2]
    assert intervened["name"] == "intervened" and intervened["y"] == [1.0, 0.0, 0.5]
    assert own["figures"]["fig-iv-distribution"]["data"][1]["y"] == [1.0, 0.0, 0.5]
    assert [j["error"] for j in own["jobs"] if j["id"] == failed] == ["Traceback ... /srv/secret.py"]
    shared = app_client.get(f"/s/{token}/api/seed-sets/{sweep_id}/interventions")
    assert shared.status_code == 200
    assert [j["error"] for j in shared.json()["jobs"] if j["id"] == failed] == [None]
    assert shared.json()["series"][0]["points"][0]["url"].startswith(f"/s/{token}/runs/")
    before = intervene_jobs(engine)
    assert app_client.post(f"/s/{token}/api/sweeps/{sweep_id}/interventions", json=IDEAL).status_code in (403, 404, 405)
    assert intervene_jobs(engine) == before
    page = app_client.get(f"/s/{token}/seed-sets/{sweep_id}").text
    assert 'id="population-interventions"' in page and 'id="population-form"' not in page
    assert 'id="population-form"' in app_client.get(f"/seed-sets/{sweep_id}").text


def submit_failed(session, run_id: int, sweep_id: int) -> int:
    from core.db import jobs

    job = jobs.submit_intervention_job(session, run_id=run_id, spec=IDEAL, population=sweep_id)
    job.status, job.error = "FAILED", "Traceback ... /srv/secret.py"
    return job.id
