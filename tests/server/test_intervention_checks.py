"""An intervention that cannot fit its run is refused at the door: 422 naming each field, nothing queued.

The served run (tests/server/conftest.py's FAST spec) has 2 layers of 1 head, inputs up to L = 3 and
weights checkpoints at its snapshot steps 0, 10 and 20.
"""

from __future__ import annotations

from core.db import jobs
from core.db.session import make_engine, session_scope


def queued_jobs(url, run_id: int) -> int:
    engine = make_engine(url)
    try:
        with session_scope(engine, readonly=True) as session:
            return len(jobs.intervention_jobs(session, run_id=run_id, limit=1000))
    finally:
        engine.dispose()


def refused(app_client, run_id: int, body: dict, csrf: dict) -> dict[str, str]:
    response = app_client.post(f"/api/runs/{run_id}/interventions", json=body, headers=csrf)
    assert response.status_code == 422, (body, response.text)
    return {entry["field"]: entry["msg"] for entry in response.json()["detail"]}


def test_a_head_the_run_does_not_have_is_refused_naming_heads(app_client, trained_run, csrf, served_url):
    before = queued_jobs(served_url, trained_run)
    errors = refused(app_client, trained_run, {"kind": "edge", "heads": ["L9H9"]}, csrf)
    assert errors == {"heads": "L9H9 is not a head of this run: this run has 2 layers (L0..L1) of 1 head (H0..H0)"}
    assert refused(app_client, trained_run, {"kind": "ablate", "heads": ["L1H3"]}, csrf).keys() == {"heads"}
    assert refused(app_client, trained_run, {"kind": "ablate", "heads": ["L2H*"]}, csrf).keys() == {"heads"}
    assert queued_jobs(served_url, trained_run) == before  # nothing was queued


def test_every_field_that_does_not_fit_is_named_at_once(app_client, trained_run, csrf):
    errors = refused(app_client, trained_run, {"kind": "activation_patch", "steps": 7, "length": 9}, csrf)
    assert errors == {"steps": "no weights checkpoint at step 7; recorded steps: 0, 10, 20",
                      "length": "must be at most 3, the run's longest test length (got 9)"}
    assert refused(app_client, trained_run, {"kind": "probe", "layer": 5}, csrf) == {
        "layer": "must be below n_layers: this run has 2 layers (L0..L1) of 1 head (H0..H0) (got 5)"}
    assert refused(app_client, trained_run, {"kind": "pattern", "variants": ["run"], "source_run": 999999}, csrf) == {
        "source_run": "there is no run 999999"}


def test_an_unknown_head_is_named_beside_a_value_that_does_not_parse(app_client, trained_run, csrf):
    errors = refused(app_client, trained_run, {"kind": "edge", "heads": ["L9H9"], "steps": "soon"}, csrf)
    assert errors == {"steps": "must be a step >= 0, 'last' or 'all' (got 'soon')",
                      "heads": "L9H9 is not a head of this run: this run has 2 layers (L0..L1) of 1 head (H0..H0)"}
    assert refused(app_client, trained_run, {"kind": "pattern", "variants": ["run"], "source_run": 10**30}, csrf) == {
        "source_run": "there is no run 1000000000000000000000000000000"}


def test_bad_values_read_like_a_run_specs_errors_not_pydantic_text(app_client, trained_run, csrf):
    errors = refused(app_client, trained_run, {"kind": "ablate", "rows_per_len": 0, "steps": "soon", "colour": 1}, csrf)
    assert errors == {"rows_per_len": "must be >= 1 (got 0)", "steps": "must be a step >= 0, 'last' or 'all' (got 'soon')",
                      "colour": "unknown key (got 1)"}
    assert not any("Input should" in message for message in errors.values())


def test_a_head_that_fits_is_still_queued(app_client, trained_run, csrf, served_url):
    before = queued_jobs(served_url, trained_run)
    response = app_client.post(f"/api/runs/{trained_run}/interventions",
                               json={"kind": "ablate", "heads": ["L1H0", "L0H*"], "steps": 10}, headers=csrf)
    assert response.status_code == 201, response.text
    assert queued_jobs(served_url, trained_run) == before + 1
