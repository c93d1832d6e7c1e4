"""Sweeps exactly once and stoppable: a submit key makes one sweep; one request (or command) cancels a
sweep, its unexpanded job included, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from core.cli import main
from core.db import jobs
from core.db.models import Job, Run, Sweep
from core.db.session import make_engine, session_scope
from core.sweeps import expand_sweep, sweep_job

BODY = {"preset": "fast-parity", "overrides": {"steps": 20, "warmup_steps": 0},
        "axes": {"d_model": [16, 32]}, "seeds": [0, 1]}


def with_key(**extra) -> dict:
    return {**BODY, "idempotency_key": f"k-{uuid.uuid4().hex}", **extra}


def sweeps_with_key(engine, key: str) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(select(func.count()).select_from(Sweep).where(Sweep.idempotency_key == key))


def test_the_same_key_twice_makes_one_sweep_and_answers_with_it(app_client, csrf, served_url):
    body = with_key(name="twice")
    first = app_client.post("/api/sweeps", json=body, headers=csrf)
    again = app_client.post("/api/sweeps", json=body, headers=csrf)
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert first.json()["created"] is True and again.json()["created"] is False
    assert {k: v for k, v in again.json().items() if k != "created"} == \
        {k: v for k, v in first.json().items() if k != "created"}
    engine = make_engine(served_url)
    try:
        assert sweeps_with_key(engine, body["idempotency_key"]) == 1
        with session_scope(engine, readonly=True) as session:  # one sweep job too, not two
            queued = [job for job in session.scalars(select(Job).where(Job.kind == "sweep"))
                      if job.payload.get("sweep_id") == first.json()["id"]]
        assert len(queued) == 1
    finally:
        engine.dispose()


def test_a_reused_key_with_another_grid_is_409_and_makes_nothing(app_client, csrf, served_url):
    body = with_key()
    assert app_client.post("/api/sweeps", json=body, headers=csrf).status_code == 201
    other = app_client.post("/api/sweeps", json={**body, "axes": {"d_model": [16, 64]}}, headers=csrf)
    assert other.status_code == 409 and body["idempotency_key"] in other.json()["detail"]
    engine = make_engine(served_url)
    try:
        assert sweeps_with_key(engine, body["idempotency_key"]) == 1
    finally:
        engine.dispose()


def test_a_bad_key_is_422_naming_the_field(app_client, csrf):
    response = app_client.post("/api/sweeps", json={**BODY, "idempotency_key": "x" * 101}, headers=csrf)
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "idempotency_key"


def test_cancel_before_expansion_cancels_the_sweep_job_and_nothing_is_ever_queued(app_client, csrf, served_url):
    created = app_client.post("/api/sweeps", json=with_key(), headers=csrf).json()
    response = app_client.post(f"/api/sweeps/{created['id']}/cancel", headers=csrf)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["cancelled_at"] and len(answer["cells"]) == 4
    assert all(cell["run_id"] is None and cell["status"] is None for cell in answer["cells"])
    engine = make_engine(served_url)
    try:
        with session_scope(engine) as session:
            assert session.get(Job, created["job_id"]).status == "CANCELLED"
            assert expand_sweep(session, sweep_id=created["id"]) == []  # a late expansion adds nothing
        with session_scope(engine, readonly=True) as session:
            assert session.scalar(select(func.count()).select_from(Run).where(Run.sweep_id == created["id"])) == 0
        assert app_client.get(f"/api/sweeps/{created['id']}").json()["cancelled_at"] == answer["cancelled_at"]
    finally:
        engine.dispose()


def test_cancel_after_expansion_ends_queued_cells_and_flags_running_ones(app_client, csrf, served_url):
    created = app_client.post("/api/sweeps", json=with_key(), headers=csrf).json()
    engine = make_engine(served_url)
    try:
        with session_scope(engine) as session:
            cell_jobs = expand_sweep(session, sweep_id=created["id"])
            jobs.request_cancel(session, job_id=sweep_job(session, sweep_id=created["id"]).id)  # as if it ran
        with session_scope(engine) as session:  # a worker has one cell training
            running = jobs.claim(session, job_id=cell_jobs[0], worker_id="test", lease_seconds=60)
        response = app_client.post(f"/api/sweeps/{created['id']}/cancel", headers=csrf)
        assert response.status_code == 200, response.text
        statuses = {cell["run_id"]: cell["status"] for cell in response.json()["cells"]}
        assert statuses.pop(running.run_id) == "RUNNING" and set(statuses.values()) == {"CANCELLED"}
        with session_scope(engine, readonly=True) as session:
            assert session.get(Job, running.job_id).cancel_requested is True
            assert [session.get(Job, job_id).status for job_id in cell_jobs[1:]] == ["CANCELLED"] * 3
        again = app_client.post(f"/api/sweeps/{created['id']}/cancel", headers=csrf)  # cancelling twice: the same
        assert again.status_code == 200 and again.json()["cancelled_at"] == response.json()["cancelled_at"]
    finally:
        engine.dispose()


def test_cancel_of_an_unknown_sweep_is_404(app_client, csrf):
    response = app_client.post("/api/sweeps/999999/cancel", headers=csrf)
    assert response.status_code == 404 and "999999" in response.json()["detail"]


def test_the_cli_lists_and_cancels_a_sweep(app_client, csrf, served_url, capsys):
    created = app_client.post("/api/sweeps", json=with_key(name="from the cli"), headers=csrf).json()
    db = served_url.render_as_string(hide_password=False)
    capsys.readouterr()
    assert main(["sweeps", "cancel", str(created["id"]), "--db", db]) == 0
    assert f"sweep {created['id']} cancelled: 4 not queued" in capsys.readouterr().out
    assert main(["sweeps", "--db", db, "list"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.split()[0] == str(created["id"]))
    assert "from the cli" in line and "4 not queued" in line and " - " not in line
    assert main(["sweeps", "cancel", "999999", "--db", db]) == 2
    assert "no sweep 999999" in capsys.readouterr().err
