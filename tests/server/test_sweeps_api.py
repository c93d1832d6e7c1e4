"""Sweeps over HTTP: POST validates and queues one sweep job; GET and the page show the grid's figures."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from core.db import crud
from core.db.models import Job, Run, Sweep
from core.db.session import make_engine, session_scope
from core.sweeps import expand_sweep

BODY = {"name": "widths <i>x</i> lengths", "preset": "fast-parity", "overrides": {"steps": 20, "warmup_steps": 0},
        "axes": {"d_model": [16, 32], "max_len": [3, 4]}, "seeds": [0, 1]}


@pytest.fixture(scope="module")
def engine(served_url):
    engine = make_engine(served_url)
    yield engine
    engine.dispose()


def finish(engine, sweep_id: int) -> dict[int, float]:
    """Expand the sweep as a worker would, and record made-up final figures on every cell's run."""
    accuracies = {}
    with session_scope(engine) as session:
        expand_sweep(session, sweep_id=sweep_id)
        for run in session.scalars(select(Run).where(Run.sweep_id == sweep_id)):
            cell = run.sweep_cell
            accuracy = cell["d_model"] / 100 + cell["max_len"] / 10 + cell["seed"] / 1000
            accuracies[run.id] = accuracy
            heads = {role: {"layer": layer, "head": 0, "scores": {"peaky_thres": accuracy / 2}}
                     for role, layer in (("eoi_locator", 0), ("iteration", 1))}
            crud.update_run(session, run_id=run.id, status="SUCCEEDED",
                            summary={"accuracy": {"test": {"seq_acc": accuracy}}, "heads": heads})
    return accuracies


def test_post_queues_one_sweep_job_and_get_shows_the_empty_grid(app_client, csrf, engine):
    response = app_client.post("/api/sweeps", json=BODY, headers=csrf)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["cells"] == 8 and created["url"] == f"/sweeps/{created['id']}"
    with session_scope(engine, readonly=True) as session:
        job = session.get(Job, created["job_id"])
        assert job.kind == "sweep" and job.status == "QUEUED" and job.payload["sweep_id"] == created["id"]
        assert session.get(Sweep, created["id"]).axes == {"d_model": [16, 32], "max_len": [3, 4], "seed": [0, 1]}
    data = app_client.get(f"/api/sweeps/{created['id']}").json()
    assert len(data["cells"]) == 8 and all(cell["run"] is None for cell in data["cells"])
    assert (data["x"]["key"], data["y"]["key"]) == ("d_model", "max_len") and data["done"] == 0


def test_the_grid_is_the_mean_over_seeds_and_cells_link_to_runs(app_client, csrf, engine):
    sweep_id = app_client.post("/api/sweeps", json=BODY, headers=csrf).json()["id"]
    finish(engine, sweep_id)
    data = app_client.get(f"/api/sweeps/{sweep_id}").json()
    assert data["done"] == data["total"] == 8
    accuracy, eoi, iteration = (entry["figure"]["data"][0] for entry in data["figures"])
    # rows are max_len (3, 4), columns d_model (16, 32); seeds 0 and 1 average to +0.0005
    expected = [[0.16 + 0.3, 0.32 + 0.3], [0.16 + 0.4, 0.32 + 0.4]]
    assert np.allclose(accuracy["z"], np.array(expected) + 0.0005)
    assert iteration["z"][0][0] == pytest.approx((0.16 + 0.3 + 0.0005) / 2) and eoi["z"] == iteration["z"]
    assert accuracy["x"] == ["16", "32"] and accuracy["y"] == ["3", "4"]
    run_urls = {cell["run"]["url"] for cell in data["cells"]}
    assert len(run_urls) == 8 and all(link in run_urls for row in data["links"] for link in row)
    page = app_client.get(f"/sweeps/{sweep_id}")
    assert page.status_code == 200 and "widths &lt;i&gt;x&lt;/i&gt; lengths" in page.text
    assert all(f'href="{url}"' in page.text for url in run_urls)


@pytest.mark.parametrize("body, field", [
    ({**BODY, "axes": {"d_model": [16, 99999]}}, "axes.d_model"),
    ({**BODY, "preset": "no-such-preset"}, "preset"),
    ({**BODY, "axes": {"no_such_key": [1]}}, "axes.no_such_key"),
    ({**BODY, "colour": "red"}, "colour"),
    ({**BODY, "axes": {"d_model": list(range(16, 16 + 64)), "max_len": list(range(2, 35))}}, "axes"),  # 2,112 cells
])
def test_bad_input_is_422_naming_the_field_and_queues_nothing(app_client, csrf, engine, body, field):
    with session_scope(engine, readonly=True) as session:
        before = len(session.scalars(select(Sweep.id)).all())
    response = app_client.post("/api/sweeps", json=body, headers=csrf)
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["detail"]}
    assert all(set(error) == {"field", "loc", "msg", "type"} for error in response.json()["detail"])  # one shape
    with session_scope(engine, readonly=True) as session:
        assert len(session.scalars(select(Sweep.id)).all()) == before


def test_unknown_sweeps_are_404(app_client):
    assert app_client.get("/api/sweeps/2147483647").status_code == 404
    assert app_client.get("/sweeps/2147483647").status_code == 404
    assert app_client.get("/api/sweeps/99999999999999999999").status_code == 422
