"""Seed sets and pack sizes through POST /api/sweeps: the pack size reaches every member's train job,
and bad seeds or pack sizes are a 422 naming the field, with nothing queued."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.db.models import Job, Sweep
from core.db.session import make_engine, session_scope
from core.sweeps import expand_sweep

SEED_SET = {"name": "eight seeds", "preset": "fast-parity", "overrides": {"steps": 20, "warmup_steps": 0}}


@pytest.fixture
def engine(served_url):
    engine = make_engine(served_url)
    yield engine
    engine.dispose()


def counts(engine) -> tuple[int, int]:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(select(func.count(Sweep.id))), session.scalar(select(func.count(Job.id)))


def test_a_seed_set_carries_its_pack_size_to_every_member(app_client, csrf, engine):
    created = app_client.post("/api/sweeps", json={**SEED_SET, "seeds": list(range(8)), "pack_size": 4}, headers=csrf)
    assert created.status_code == 201, created.text
    assert created.json()["cells"] == 8
    with session_scope(engine) as session:
        job_ids = expand_sweep(session, sweep_id=created.json()["id"], pack_size=4)
        members = [session.get(Job, job_id) for job_id in job_ids]
        assert [job.payload["pack_size"] for job in members] == [4] * 8
        assert len({job.payload["pack_key"] for job in members}) == 1  # one shape: one pack key
        assert session.get(Job, created.json()["job_id"]).payload["pack_size"] == 4


@pytest.mark.parametrize("extra, field, words", [
    ({"seeds": list(range(8)), "pack_size": 0}, "pack_size", "between 1 and 512 (got 0)"),
    ({"seeds": list(range(8)), "pack_size": 513}, "pack_size", "between 1 and 512 (got 513)"),
    ({"seeds": list(range(1500))}, "seeds", "at most 1000 seeds"),
    ({"seeds": list(range(10_000))}, "seeds", "at most 2048"),
    ({"seeds": []}, "seeds", "at least one seed"),
])
def test_bad_seeds_and_pack_sizes_are_422_naming_the_field_and_queue_nothing(app_client, csrf, engine, extra,
                                                                              field, words):
    before = counts(engine)
    response = app_client.post("/api/sweeps", json={**SEED_SET, **extra}, headers=csrf)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["field"] == field and words in e["msg"] for e in errors), errors
    assert counts(engine) == before


def test_a_seed_range_is_parsed_by_the_server(app_client, csrf, engine):
    created = app_client.post("/api/sweeps", json={**SEED_SET, "seeds": "0-2,7"}, headers=csrf)
    assert created.status_code == 201, created.text
    with session_scope(engine, readonly=True) as session:
        assert session.get(Sweep, created.json()["id"]).axes == {"seed": [0, 1, 2, 7]}
    backwards = app_client.post("/api/sweeps", json={**SEED_SET, "seeds": "5-2"}, headers=csrf)
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["field"] == "seeds" and "runs backwards" in backwards.json()["detail"][0]["msg"]


def test_studies_are_listed_and_bad_ones_are_422_naming_the_field(app_client, csrf, engine):
    listed = app_client.get("/api/studies").json()["studies"]
    dynamics = next(study for study in listed if study["name"] == "paper-dynamics-cpu")
    assert [arm["name"] for arm in dynamics["arms"]][:2] == ["polynomial", "parity"]
    assert dynamics["arms"][0]["runs"] == 8 and dynamics["arms"][2]["from_arm"] == "polynomial"
    before = counts(engine)
    for body, field in (({"study": "paper-nothing"}, "study"), ({"study": "paper-scaling-cpu", "pack_size": 0}, "pack_size")):
        response = app_client.post("/api/studies", json=body, headers=csrf)
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == field, response.text
    assert counts(engine) == before
