"""The runs pages: what they show, that user strings stay inert, and the New-run form's round trip."""

from __future__ import annotations

import json
import re

import pytest

from core.specs.run import FLAT_KEYS
from tests.server.conftest import FAST, form_token

NASTY = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']
TINY = {**FAST, "steps": 5, "warmup_steps": 0}


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)[1])


@pytest.fixture(scope="module")
def nasty_run(app_client):
    token = re.search(r'<meta name="csrf-token" content="([^"]*)"', app_client.get("/").text)[1]
    body = {"preset": "fast-parity", "overrides": TINY, "name": NASTY[0], "tags": [NASTY[1]], "notes": NASTY[1]}
    response = app_client.post("/api/runs", json=body, headers={"X-CSRF-Token": token})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_user_strings_are_escaped_on_the_runs_list_and_the_run_page(app_client, nasty_run):
    for path in ("/", f"/runs/{nasty_run}", f"/?q={NASTY[0]}"):
        html = app_client.get(path).text
        for text in NASTY:
            assert text not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert "onerror=alert(1)&gt;" in html or "onerror=alert(1)" not in html, path


def test_the_runs_list_shows_status_progress_accuracy_and_verdict(app_client, trained_run):
    html = app_client.get("/", params={"tag": "trained"}).text
    row = re.search(rf'<tr data-run="{trained_run}">(.*?)</tr>', html, re.S)[1]
    assert "succeeded" in row and "20/20" in row and "test accuracy" in row and 'class="pick"' in row
    assert 'action="/compare"' in html and 'id="compare-button"' in html


def test_the_runs_list_filters_and_pages(app_client, unique_tag, csrf):
    for name in ("one", "two", "three"):
        app_client.post("/api/runs", json={"spec": TINY, "name": name, "tags": [unique_tag]}, headers=csrf)
    html = app_client.get("/", params={"tag": unique_tag, "limit": 2}).text
    assert html.count('<tr data-run=') == 2 and "older →" in html and "of 3" in html
    assert app_client.get("/", params={"tag": unique_tag, "q": "thr"}).text.count('<tr data-run=') == 1
    assert app_client.get("/", params={"limit": 0}).status_code == 422


def test_the_run_page_carries_its_state_figures_and_viewer(app_client, trained_run):
    html = app_client.get(f"/runs/{trained_run}", params={"step": 10, "probe": 3, "layer": 0, "head": 0}).text
    data = page_data(html)
    assert data["state"] == {"step": 10, "probe": 3, "length": 2, "layer": 0, "head": 0, "score": "peaky_thres"}
    assert data["snapshot"]["step"] == 10 and data["snapshot"]["probe"] == 3 and data["api_base"] == "/api"
    for element in ("fig-loss", "fig-acc-test", "fig-emergence-iteration", "attention-focus", "step-slider"):
        assert f'id="{element}"' in html
    assert "/vendor/plotly.min.js" in html and "cdn" not in html.lower()
    assert 'id="cancel"' in html and "new run like this" in html
    assert f"/api/runs/{trained_run}/download/snapshots.npz" in html


def test_out_of_range_state_falls_back_to_what_exists(app_client, trained_run):
    data = page_data(app_client.get(f"/runs/{trained_run}", params={"step": 7, "probe": 99, "layer": 9}).text)
    assert data["state"]["step"] == 10 and data["state"]["probe"] < 6 and data["state"]["layer"] in (0, 1)  # the nearest snapshot
    assert page_data(app_client.get(f"/runs/{trained_run}", params={"step": 10**6}).text)["state"]["step"] == 20
    assert page_data(app_client.get(f"/runs/{trained_run}", params={"step": 15}).text)["state"]["step"] == 10  # a tie: the earlier
    assert app_client.get("/runs/999999").status_code == 404


@pytest.mark.parametrize("path", ["/runs/{}", "/sweeps/{}", "/runs/{}/shares", "/api/runs/{}", "/api/sweeps/{}",
                                  "/api/runs/{}/shares", "/api/runs/{}/interventions"])
@pytest.mark.parametrize("bad_id", ["99999999999999999999999", "2147483648", "0"])
def test_an_id_out_of_the_integer_range_is_422_not_500(app_client, path, bad_id):
    assert app_client.get(path.format(bad_id)).status_code == 422


def test_the_new_run_form_shows_every_field_with_its_bound(app_client):
    html = app_client.get("/runs/new", params={"preset": "paper-parity"}).text
    for key in FLAT_KEYS:
        if key not in ("init_from", "trainable"):
            assert f'name="{key}"' in html, key
    assert 'name="init_run"' in html and 'value="mlp2"' in html and 'name="idempotency_key"' in html
    assert "1..64" in html and "2..2048" in html
    axis = re.search(r'<select name="sweep_key1".*?</select>', html, re.S)[0]  # sweep axes: the numeric keys
    assert '<option value="d_model">' in axis and '<option value="lr">' in axis and 'value="problem"' not in axis
    assert re.search(r'<input name="steps" id="f-steps" value="64000"', html)
    assert "parameters" in re.search(r'id="budget"[^>]*>([^<]*)<', html)[1]


def form_of(app_client, **changes):
    html = app_client.get("/runs/new", params={"preset": "fast-parity"}).text
    fields = dict(re.findall(r'<input name="(\w+)" id="f-\w+" value="([^"]*)"', html))
    fields.update(re.findall(r'<select name="(\w+)" id="f-\w+">.*?<option value="([^"]*)" selected', html, re.S))
    fields.update({k: v for k, v in TINY.items()}, trainable_choice="all", **form_token(html))
    fields["idempotency_key"] = re.search(r'name="idempotency_key" value="(\w+)"', html)[1]
    fields.update(changes)
    return {k: str(v) for k, v in fields.items()}


def test_posting_the_form_queues_one_run_even_twice(app_client, unique_tag):
    form = form_of(app_client, name="from the form", tags=unique_tag, seed=7)
    first = app_client.post("/runs/new", data=form, follow_redirects=False)
    assert first.status_code == 303, first.text[:2000]
    again = app_client.post("/runs/new", data=form, follow_redirects=False)
    assert again.headers["location"] == first.headers["location"]
    run = app_client.get("/api" + first.headers["location"]).json()
    assert run["name"] == "from the form" and run["config"]["seed"] == 7 and run["preset"] == "fast-parity"
    assert app_client.get("/api/runs", params={"tag": unique_tag}).json()["total"] == 1


def test_bad_form_values_come_back_with_the_message_and_queue_nothing(app_client, unique_tag):
    form = form_of(app_client, tags=unique_tag, d_model="65536", lr="fast", init_run="999999", init_step="0")
    response = app_client.post("/runs/new", data=form, follow_redirects=False)
    assert response.status_code == 422
    html = response.text
    assert re.search(r'data-error-for="lr">must be a number', html)  # every bad field at once:
    assert re.search(r'data-error-for="d_model">must be &lt;= 2048', html)
    assert re.search(r'data-error-for="init_from">there is no run 999999', html)
    assert 'value="fast"' in html  # what was typed stays in the field
    assert app_client.get("/api/runs", params={"tag": unique_tag}).json()["total"] == 0
    spec_only = app_client.post("/runs/new", data=form_of(app_client, tags=unique_tag, d_model="65536"))
    assert spec_only.status_code == 422 and re.search(r'data-error-for="d_model">must be &lt;= 2048', spec_only.text)
    init = app_client.post("/runs/new", data=form_of(app_client, tags=unique_tag, init_run="999999", init_step="0"))
    assert init.status_code == 422 and re.search(r'data-error-for="init_from">there is no run 999999', init.text)
    assert app_client.get("/api/runs", params={"tag": unique_tag}).json()["total"] == 0


def test_a_shared_view_hides_the_owner_controls(app_client, served_url, trained_run):
    from core.db import shares
    from core.db.session import make_engine, session_scope

    engine = make_engine(served_url)
    with session_scope(engine) as session:
        token = shares.create(session, kind="run", target={"run_ids": [trained_run]})[1]
    engine.dispose()
    html = app_client.get(f"/s/{token}/runs/{trained_run}").text
    assert 'id="cancel"' not in html and "new run like this" not in html and "read-only" in html
    assert page_data(html)["api_base"] == f"/s/{token}/api"
    assert f'href="/s/{token}/runs/{trained_run}?step=' in html  # evidence links stay inside the share
    assert app_client.get(f"/s/{token}/runs/new").status_code == 404


def test_the_run_page_builds_one_snapshot_view_and_the_npz_reads_snapshots_in_one_query(
        app, app_client, trained_run, monkeypatch):
    from sqlalchemy import event

    from core.db.session import session_scope
    from server.views import runs as views

    built = []
    real = views.snapshot_view
    monkeypatch.setattr(views, "snapshot_view", lambda session, **kw: built.append(kw) or real(session, **kw))
    page = app_client.get(f"/runs/{trained_run}", params={"step": 10, "probe": 3})
    assert page.status_code == 200 and page_data(page.text)["state"]["probe"] == 3
    assert [kw["probe"] for kw in built] == [3]

    statements = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute: conn, cursor, statement, ...)
    event.listen(app.state.engine, "before_cursor_execute", listen)
    try:
        with session_scope(app.state.engine, readonly=True) as session:
            arrays = views.all_snapshots(session, run_id=trained_run)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", listen)
    assert list(arrays["steps"]) == [0, 10, 20]
    assert sum("FROM snapshots" in s for s in statements) == 1, statements
