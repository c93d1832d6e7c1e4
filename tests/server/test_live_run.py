"""A run while it trains, as its page and JSON show it: the summary so far, and a silent job's stall line.

The "training" here is the records a worker writes (a claimed job, its progress, metric rows),
written straight into the served database, so each test controls exactly what the page sees.
"""

from __future__ import annotations

from datetime import timedelta


from core.db import crud, jobs
from core.db.models import Job, utcnow
from core.db.session import make_engine, session_scope
from core.specs.run import RunSpec
from core.submit import submit_run
from core.summary import summarize, summary_keys
from tests.server.conftest import FAST

LIVE = {**FAST, "n_layers": 2, "n_heads": 2, "steps": 400}


def start_run(url, *, name: str) -> tuple[int, int, int]:
    """A queued run of LIVE, its train job claimed as a worker would: (run id, job id, token)."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            queued = submit_run(session, spec=RunSpec.from_flat(LIVE), name=name)
        with session_scope(engine) as session:
            claim = jobs.claim(session, job_id=queued.job_id, worker_id="test-worker", lease_seconds=3600)
            assert claim is not None
            token = session.get(Job, queued.job_id).fencing_token
        return queued.run_id, queued.job_id, token
    finally:
        engine.dispose()


def write(url, fn) -> None:
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            fn(session)
    finally:
        engine.dispose()


def test_the_summary_of_the_summary_keys_equals_the_summary_of_every_row(served_url, trained_run):
    engine = make_engine(served_url)
    try:
        with session_scope(engine, readonly=True) as session:
            run = crud.get_run(session, run_id=trained_run)
            every = crud.get_metrics(session, run_id=trained_run)
            some = crud.get_metrics(session, run_id=trained_run, keys=summary_keys(run.spec))
    finally:
        engine.dispose()
    assert len(some) < len(every)  # the per-length scores stay behind
    assert summarize(some) == summarize(every)
    assert summarize(some)["heads"] and summarize(some)["accuracy"]["test"]["seq_acc"] is not None


def test_a_running_run_shows_its_summary_so_far(app_client, served_url):
    run_id, job_id, token = start_run(served_url, name="live-summary")
    html = app_client.get(f"/runs/{run_id}").text
    assert "No summary yet: the first evaluation writes one." in html
    rows = [("score/eoi_locator/peaky_thres/L0H1", 100, 0.95), ("score/iteration/peaky_thres/L1H0", 100, 0.62),
            ("score/iteration/peaky_thres/L1H1", 100, 0.1), ("test/seq_acc", 100, 0.41), ("train/loss", 100, 0.8)]
    write(served_url, lambda s: crud.upsert_metrics(s, run_id=run_id, rows=rows))
    detail = app_client.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "RUNNING" and detail["summary"]["finished"] is False
    assert detail["summary"]["heads"]["iteration"]["label"] == "L1H0"
    assert "partial iteration head so far at L1H0" in detail["summary"]["verdict"]
    html = app_client.get(f"/runs/{run_id}").text
    assert "partial iteration head so far at L1H0" in html and "So far, at step 100" in html
    peaky = app_client.get(f"/api/runs/{run_id}/figures").json()["figures"]["fig-peaky"]
    assert [trace["y"] for trace in peaky["data"]] == [[0.95], [0.62]]  # both circuit heads, drawn live


def test_a_job_silent_for_minutes_says_so_and_what_the_worker_will_do(app_client, served_url):
    run_id, job_id, token = start_run(served_url, name="silent")
    write(served_url, lambda s: jobs.report_progress(s, job_id=job_id, token=token,
                                                     progress={"step": 40, "total": 400}))
    assert "no progress for" not in app_client.get(f"/runs/{run_id}").text  # it reported just now

    def age(session):
        job = session.get(Job, job_id)
        job.payload = {**job.payload, "progress_at": (utcnow() - timedelta(minutes=7, seconds=5)).isoformat()}
    write(served_url, age)
    html = app_client.get(f"/runs/{run_id}").text
    assert ("no progress for 7 min; the worker kills and resumes a training process silent for 15 min"
            " (CIRCUITBOARD_STALL_SECONDS)") in html
    assert app_client.get(f"/api/runs/{run_id}").json()["progress"]["silent_s"] >= 7 * 60
