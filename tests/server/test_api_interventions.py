"""Interventions over HTTP: queue a job (validated, owner only), run it, read the results back."""

from __future__ import annotations

import pytest

from core.db import crud, jobs, shares
from core.db.session import make_engine, session_scope


def test_bad_specs_are_refused_with_422(app_client, trained_run, csrf):
    url = f"/api/runs/{trained_run}/interventions"
    for body in ({"kind": "scramble"}, {"kind": "ablate", "colour": 1}, {"kind": "edge", "heads": ["head one"]},
                 {"kind": "ablate", "variants": ["renorm"]}, {"kind": "probe"}, {"kind": "pattern", "variants": ["run"]},
                 {"kind": "ablate", "rows_per_len": 0}):
        assert app_client.post(url, json=body, headers=csrf).status_code == 422, body
    assert app_client.post("/api/runs/999999/interventions", json={"kind": "ablate"}, headers=csrf).status_code == 404


def test_queue_run_and_read_back(app_client, trained_run, csrf, served_url):
    pytest.importorskip("torch")
    from core.causal.jobs import execute_intervention_job

    spec = {"kind": "edge", "heads": ["L1H0"], "variants": ["raw"], "rows_per_len": 4}
    response = app_client.post(f"/api/runs/{trained_run}/interventions", json=spec, headers=csrf)
    assert response.status_code == 201
    job_id = response.json()["job_id"]
    (listed,) = [j for j in app_client.get(f"/api/runs/{trained_run}/interventions").json()["jobs"] if j["id"] == job_id]
    assert listed["status"] == "QUEUED" and listed["spec"]["heads"] == ["L1H0"] and listed["error"] is None
    engine = make_engine(served_url)
    try:
        with session_scope(engine, readonly=True) as session:
            job = crud.get_job(session, job_id=job_id)
            assert (job.kind, job.run_id, job.status) == ("intervene", trained_run, "QUEUED")
            assert job.payload["spec"]["heads"] == ["L1H0"]
        assert execute_intervention_job(engine, job_id) == "SUCCEEDED"
    finally:
        engine.dispose()
    body = app_client.get(f"/api/runs/{trained_run}/interventions").json()
    (series,) = [s for s in body["series"] if s["intervention"] == "edge/iteration/raw"]
    assert series["target"] == "L1H0" and len(series["points"]) == 1
    assert set(series["points"][0]["by_length"]) == {"1", "2", "3"}
    assert body["verdict"]["lines"] and "peaky_thres" in body["verdict"]["text"]


def test_share_links_read_but_never_launch(app_client, trained_run, served_url):
    engine = make_engine(served_url)
    try:
        with session_scope(engine) as session:
            _, token = shares.create(session, kind="run", target={"run_ids": [trained_run]})
            failed = jobs.submit_intervention_job(session, run_id=trained_run, spec={"kind": "ablate"})
            failed.status, failed.error = "FAILED", "Traceback ... /srv/secret/path.py"
            failed_id = failed.id
    finally:
        engine.dispose()
    shared = app_client.get(f"/s/{token}/api/runs/{trained_run}/interventions")
    assert shared.status_code == 200
    (seen,) = [j for j in shared.json()["jobs"] if j["id"] == failed_id]
    assert seen["status"] == "FAILED" and seen["error"] is None  # a failure's text stays with the owner
    (own,) = [j for j in app_client.get(f"/api/runs/{trained_run}/interventions").json()["jobs"] if j["id"] == failed_id]
    assert own["error"].startswith("Traceback")
    assert app_client.get(f"/s/{token}/api/runs/{trained_run + 1000}/interventions").status_code == 404
    posted = app_client.post(f"/s/{token}/api/runs/{trained_run}/interventions", json={"kind": "ablate"})
    assert posted.status_code in (403, 404, 405)
    page = app_client.get(f"/s/{token}/runs/{trained_run}").text
    assert 'id="causal"' in page and 'id="causal-form"' not in page
    assert 'id="causal-form"' in app_client.get(f"/runs/{trained_run}").text
