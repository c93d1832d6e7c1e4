"""Finished runs from memory: ETag and 304, a cached answer that changes whenever the run does, live
runs never cached, shared views cached per link, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from core.db import crud, jobs
from core.db.models import InterventionResult
from core.db.session import make_engine, session_scope
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.server.conftest import FAST, page_csrf


@pytest.fixture(scope="module")
def engine(served_url):
    engine = make_engine(served_url)
    yield engine
    engine.dispose()


def cache_of(app):
    return app.state.render_cache


@pytest.fixture(autouse=True)
def check_every_request(app):
    """Read the change stamp on every request (a test that wants the 0.5 s default sets it itself)."""
    cache_of(app).check_seconds = 0.0
    yield
    cache_of(app).check_seconds = 0.0


@pytest.mark.parametrize("path", ["/runs/{id}", "/api/runs/{id}", "/api/runs/{id}/metrics?prefix=test/",
                                  "/api/runs/{id}/figures"])
def test_a_finished_run_answers_with_an_etag_and_304_when_unchanged(app_client, trained_run, path):
    url = path.format(id=trained_run)
    first = app_client.get(url)
    assert first.status_code == 200 and first.headers["etag"].startswith('"')
    assert first.headers["cache-control"] == "private, no-cache"
    again = app_client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
    stale = app_client.get(url, headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_a_cached_page_is_the_render_with_each_readers_own_csrf_token(app, app_client, trained_run):
    hits = cache_of(app).hits
    mine = [app_client.get(f"/runs/{trained_run}") for _ in range(2)]
    assert cache_of(app).hits >= hits + 1 and mine[0].text == mine[1].text
    with TestClient(app, base_url="http://127.0.0.1") as other:  # another browser: another CSRF cookie
        theirs = other.get(f"/runs/{trained_run}")
        assert page_csrf(theirs.text) and page_csrf(theirs.text) != page_csrf(mine[0].text)
        assert theirs.headers["etag"] != mine[0].headers["etag"]
        assert theirs.text.replace(page_csrf(theirs.text), "T") == mine[0].text.replace(page_csrf(mine[0].text), "T")
        csrf = {"X-CSRF-Token": page_csrf(theirs.text)}  # the token served from the cache works for its reader
        assert other.post(f"/api/runs/{trained_run}/retry", headers=csrf).status_code == 409  # SUCCEEDED: refused, not 403


@pytest.mark.parametrize("path", ["/api/runs/{id}", "/runs/{id}"])  # the page's gzip is spliced around its token
def test_gzip_readers_get_the_same_body_compressed(app_client, trained_run, path):
    plain = app_client.get(path.format(id=trained_run), headers={"Accept-Encoding": "identity"})
    zipped = app_client.get(path.format(id=trained_run), headers={"Accept-Encoding": "gzip"})
    assert zipped.headers.get("content-encoding") == "gzip" and zipped.content == plain.content
    assert int(zipped.headers["content-length"]) < len(plain.content) / 2


def test_the_page_changes_after_an_intervention_a_note_and_a_child_run(app_client, trained_run, engine):
    def etags():
        return app_client.get(f"/runs/{trained_run}").headers["etag"], app_client.get(f"/api/runs/{trained_run}").headers["etag"]

    before = etags()
    assert etags() == before
    with session_scope(engine) as session:
        session.add(InterventionResult(run_id=trained_run, step=20, intervention="ablate/zero", target="L9H9",
                                       spec={}, result={"accuracy": 0.5}))
    after_result = etags()
    assert after_result[0] != before[0] and after_result[1] != before[1]

    with session_scope(engine) as session:
        crud.update_run(session, run_id=trained_run, notes="a note added after the run finished")
    assert "a note added after the run finished" in app_client.get(f"/runs/{trained_run}").text
    assert app_client.get(f"/api/runs/{trained_run}").json()["notes"] == "a note added after the run finished"

    with session_scope(engine) as session:  # a fine-tune of it appears in its lineage
        child = submit_run(session, spec=RunSpec.from_flat({**FAST, "init_from": f"{trained_run}@20"}),
                           name="child of the cached run").run_id
    assert "child of the cached run" in app_client.get(f"/runs/{trained_run}").text
    assert child in [c["id"] for c in app_client.get(f"/api/runs/{trained_run}").json()["lineage"]["children"]]


def test_a_run_that_is_still_training_is_never_cached(app_client, engine):
    with session_scope(engine) as session:
        queued = submit_run(session, spec=RunSpec.from_flat(FAST), name="live")
    with session_scope(engine) as session:
        claim = jobs.claim(session, job_id=queued.job_id, worker_id="test", lease_seconds=60)
    for step in (3, 7):
        with session_scope(engine) as session:
            crud.update_run(session, run_id=queued.run_id, step=step)
            jobs.report_progress(session, job_id=claim.job_id, token=claim.token, progress={"step": step, "total": 20})
        page, data = app_client.get(f"/runs/{queued.run_id}"), app_client.get(f"/api/runs/{queued.run_id}")
        assert "etag" not in page.headers and "etag" not in data.headers
        assert data.json()["status"] == "RUNNING" and data.json()["progress"]["step"] == step
        assert f"step {step} / 20" in page.text
    with session_scope(engine) as session:  # it finishes: from now on it is cached
        jobs.finish(session, job_id=claim.job_id, token=claim.token, status="SUCCEEDED")
    assert app_client.get(f"/api/runs/{queued.run_id}").json()["status"] == "SUCCEEDED"
    assert "etag" in app_client.get(f"/api/runs/{queued.run_id}").headers


def test_the_stamp_is_trusted_for_check_seconds_and_read_again_after(app, app_client, trained_run, engine):
    cache_of(app).check_seconds = 0.5
    app_client.get(f"/api/runs/{trained_run}")
    reads = cache_of(app).stamp_reads
    for _ in range(20):  # a burst: the database is asked at most once more
        assert app_client.get(f"/api/runs/{trained_run}").status_code == 200
    assert cache_of(app).stamp_reads <= reads + 1
    with session_scope(engine) as session:
        crud.update_run(session, run_id=trained_run, notes="changed elsewhere")
    deadline = time.monotonic() + 0.5 + 2  # within check_seconds (plus this machine's slack)
    while app_client.get(f"/api/runs/{trained_run}").json()["notes"] != "changed elsewhere":
        assert time.monotonic() < deadline, "a change made elsewhere never showed"
        time.sleep(0.05)


def test_a_retried_run_goes_live_again_at_once(app, app_client, csrf, engine):
    cache_of(app).check_seconds = 30  # the retry itself must make the run's pages live, not the clock
    with session_scope(engine) as session:
        queued = submit_run(session, spec=RunSpec.from_flat(FAST), name="to retry")
        jobs.request_cancel(session, job_id=queued.job_id)
    assert app_client.get(f"/api/runs/{queued.run_id}").json()["status"] == "CANCELLED"
    assert app_client.post(f"/api/runs/{queued.run_id}/retry", headers=csrf).status_code == 200
    answer = app_client.get(f"/api/runs/{queued.run_id}")
    assert answer.json()["status"] == "QUEUED" and "etag" not in answer.headers


def test_shared_views_are_cached_per_link_and_a_revoked_link_is_404(app, app_client, csrf, trained_run, engine):
    made = app_client.post(f"/api/runs/{trained_run}/shares", json={"label": "lab channel"}, headers=csrf).json()
    prefix = made["url"].split("/runs/")[0]
    hits = cache_of(app).hits
    shared = [app_client.get(f"{prefix}/runs/{trained_run}") for _ in range(3)]
    assert all(page.status_code == 200 for page in shared) and cache_of(app).hits >= hits + 2
    assert f'{prefix}/api' in shared[0].text and "/runs/new?copy=" not in shared[0].text  # read-only, inside the link
    owner = app_client.get(f"/runs/{trained_run}")
    assert prefix not in owner.text and "/runs/new?copy=" in owner.text
    assert app_client.get(f"{prefix}/api/runs/{trained_run}").status_code == 200
    assert app_client.delete(f"/api/shares/{made['id']}", headers=csrf).status_code in (200, 204)
    assert app_client.get(f"{prefix}/runs/{trained_run}").status_code == 404
    assert app_client.get(f"{prefix}/api/runs/{trained_run}").status_code == 404


def test_an_unknown_run_is_still_404(app_client):
    assert app_client.get("/api/runs/987654").status_code == 404
    assert app_client.get("/runs/987654").status_code == 404
