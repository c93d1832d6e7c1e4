"""Seed sets, their comparison, the sweeps index and the sweep grid through training, over HTTP.

Synthetic records (``tests/population_support.py``) in the served database (SQLite, then
PostgreSQL): each JSON twin is checked against ``core.population`` and the stored rows, each page
against its JSON, and bad input against the clear 422 it must give.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from sqlalchemy import select

from core import population as P
from core.db.models import Run, Sweep
from core.db.session import make_engine, session_scope
from tests.population_support import grid_rows, seed_set_rows

STEPS = list(range(0, 2001, 100))


@pytest.fixture(scope="module")
def engine(served_url):
    engine = make_engine(served_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sets(engine) -> dict[str, int]:
    with session_scope(engine) as session:
        return {"scratch": seed_set_rows(session, seeds=range(6), steps=STEPS, name="parity <b>scratch</b>",
                                         midpoint=lambda seed: None if seed == 4 else 1000 + 50 * seed, width=20),
                "tuned": seed_set_rows(session, seeds=range(6), steps=STEPS, name="parity fine-tuned",
                                       midpoint=lambda seed: 100 + 5 * seed, width=2),
                "grid": grid_rows(session, axes={"d_model": [16, 32, 64], "max_len": [3, 4]}, seeds=[0, 1, 2],
                                  steps=[0, 50, 100, 150])}


def test_a_seed_set_is_its_core_data_with_bands_and_links(app_client, engine, sets):
    data = app_client.get(f"/api/seed-sets/{sets['scratch']}").json()
    with session_scope(engine, readonly=True) as session:
        core = P.seed_set(session, sweep_id=sets["scratch"])
    assert data["curves"] == core["curves"] and data["emergence"] == core["emergence"]
    assert [m["run_id"] for m in data["members"]] == [m["run_id"] for m in core["members"]]
    assert data["members"][-1]["seed"] == 4 and data["members"][-1]["formed"] == "none"
    assert all(m["url"] == f"/runs/{m['run_id']}" for m in data["members"])
    accuracy = data["figures"]["fig-accuracy"]["data"]
    assert [t.get("fill") for t in accuracy] == [None, "tonexty", None, "tonexty", None]  # min-max, std, mean
    assert accuracy[4]["y"] == core["curves"]["accuracy"]["mean"] and accuracy[1]["y"] == core["curves"]["accuracy"]["max"]
    page = app_client.get(f"/seed-sets/{sets['scratch']}")
    assert page.status_code == 200 and "parity &lt;b&gt;scratch&lt;/b&gt;" in page.text
    rows = re.findall(r'<tr class="formed-(\w+)" data-seed="(\d+)">', page.text)
    assert [int(seed) for _, seed in rows] == [m["seed"] for m in data["members"]] and rows[-1] == ("none", "4")
    assert all(f'href="{m["url"]}"' in page.text for m in data["members"])


def test_two_seed_sets_compare_with_steps_to_099_and_their_ratio(app_client, sets):
    data = app_client.get(f"/api/seed-sets/compare?sets={sets['scratch']},{sets['tuned']}").json()
    scratch, tuned = data["sets"]
    assert scratch["steps_to_threshold"]["never"] == 1 and tuned["steps_to_threshold"]["never"] == 0
    expected = scratch["steps_to_threshold"]["median"] / tuned["steps_to_threshold"]["median"]
    assert data["ratios"] == [1.0, pytest.approx(expected)] and expected > 5
    names = {t["name"] for t in data["figures"]["fig-accuracy"]["data"] if t.get("fill")}
    assert any("&lt;b&gt;" in name for name in names) and len(names) == 4  # two bands per set, names escaped
    steps = data["figures"]["fig-steps"]["data"]
    assert [len(box["x"]) for box in steps] == [5, 6] and "(1 never)" in steps[0]["name"]
    at_09 = app_client.get(f"/api/seed-sets/compare?sets={sets['scratch']},{sets['tuned']}&threshold=0.9").json()
    assert at_09["threshold"] == 0.9 and at_09["sets"][1]["steps_to_threshold"]["n"] == 6
    page = app_client.get(f"/seed-sets/compare?sets={sets['scratch']},{sets['tuned']}&threshold=0.9")
    assert page.status_code == 200
    assert re.search(r'class="ratio">([0-9.]+)× fewer steps', page.text)[1] == f"{at_09['ratios'][1]:.1f}"


def test_the_sweeps_index_lists_seed_sets_and_grids_and_the_nav_links_it(app_client, sets):
    data = app_client.get("/api/sweeps").json()
    by_id = {row["id"]: row for row in data["sweeps"]}
    assert by_id[sets["scratch"]]["kind"] == "seed set" and by_id[sets["scratch"]]["cells"] == 6
    assert by_id[sets["grid"]]["kind"] == "grid" and by_id[sets["grid"]]["status"]["SUCCEEDED"] == 18
    assert by_id[sets["scratch"]]["seed_set_url"] == f"/seed-sets/{sets['scratch']}" and by_id[sets["grid"]]["seed_set_url"] is None
    page = app_client.get("/sweeps")
    assert page.status_code == 200 and '<a href="/sweeps">Sweeps</a>' in page.text
    picks = set(re.findall(r'class="pick-set" value="(\d+)"', page.text))
    assert {str(sets["scratch"]), str(sets["tuned"])} <= picks and str(sets["grid"]) not in picks
    assert '<a href="/sweeps">Sweeps</a>' in app_client.get("/").text


def test_the_sweep_grid_at_a_step_is_the_mean_over_seeds_with_the_spread_on_hover(app_client, engine, sets):
    grid = sets["grid"]
    final = app_client.get(f"/api/sweeps/{grid}").json()
    assert final["steps"] == [0, 50, 100, 150] and final["step"] is None and final["score"] == "peaky_thres"
    data = app_client.get(f"/api/sweeps/{grid}?step=50&score=peaky_abs").json()
    assert data["step"] == 50 and data["score"] == "peaky_abs"
    with session_scope(engine, readonly=True) as session:
        at = P.grid_at(session, sweep_id=grid, step=50, score="peaky_abs")
        cells = {run.id: run.sweep_cell for run in session.scalars(select(Run).where(Run.sweep_id == grid))}
    accuracy, _eoi, iteration = (entry["figure"]["data"][0] for entry in data["figures"])
    for i, y in enumerate(data["y"]["values"]):
        for j, x in enumerate(data["x"]["values"]):
            members = [run_id for run_id, c in cells.items() if c["d_model"] == x and c["max_len"] == y]
            values = np.array([at[r]["iteration"] for r in members])
            assert iteration["z"][i][j] == pytest.approx(values.mean(), abs=1e-4)
            assert f"± {values.std():.3f}" in iteration["customdata"][i][j] and "n = 3" in iteration["customdata"][i][j]
    assert accuracy["z"] != [[e for e in row] for row in final["figures"][0]["figure"]["data"][0]["z"]]  # step 50 != final
    page = app_client.get(f"/sweeps/{grid}?step=50&score=peaky_abs")
    assert page.status_code == 200 and 'id="sweep-step" min="0" max="4"' in page.text and 'value="1"' in page.text
    assert '<option value="peaky_abs" selected>' in page.text and "step 50" in page.text


def test_bad_input_is_a_clear_error(app_client, engine, sets):
    with session_scope(engine) as session:
        empty = Sweep(name="empty", spec={}, axes={"seed": [0, 1]})
        session.add(empty)
        session.flush()
        empty_id = empty.id

    def field(response):
        assert response.status_code == 422, response.text
        return {error["field"]: error["msg"] for error in response.json()["detail"]}

    assert "no runs yet" in field(app_client.get(f"/api/seed-sets/{empty_id}"))["sweep_id"]
    assert field(app_client.get(f"/api/sweeps/{sets['grid']}?step=151"))["step"] == \
        "step 151 is beyond the last snapshot (step 150)"
    assert "score" in field(app_client.get(f"/api/sweeps/{sets['grid']}?score=loudness"))
    assert "not only the seed" in field(app_client.get(f"/api/seed-sets/{sets['grid']}"))["sweep_id"]
    assert "two or more" in field(app_client.get(f"/api/seed-sets/compare?sets={sets['tuned']}"))["sets"]
    assert "no runs yet" in field(app_client.get(f"/api/seed-sets/compare?sets={sets['tuned']},{empty_id}"))["sets"]
    assert "sets" in field(app_client.get("/api/seed-sets/compare?sets=7;8"))
    assert "threshold" in field(app_client.get(f"/api/seed-sets/{sets['tuned']}?threshold=2"))
    for page in (f"/seed-sets/{empty_id}", f"/sweeps/{sets['grid']}?step=151"):
        response = app_client.get(page)
        assert response.status_code == 422 and response.headers["content-type"].startswith("text/html")
        assert "no runs yet" in response.text or "beyond the last snapshot (step 150)" in response.text
    assert app_client.get("/api/seed-sets/2147483647").status_code == 404
    assert app_client.get("/seed-sets/2147483647").status_code == 404
    assert app_client.get(f"/api/seed-sets/compare?sets={sets['tuned']},2147483647").status_code == 404


def test_a_shared_seed_set_sees_only_itself(app_client, csrf, sets):
    response = app_client.post("/api/shares", json={"kind": "sweep", "sweep_id": sets["tuned"]}, headers=csrf)
    assert response.status_code == 201, response.text
    prefix = "/s/" + response.json()["url"].split("/s/", 1)[1].split("/", 1)[0]
    data = app_client.get(f"{prefix}/api/seed-sets/{sets['tuned']}").json()
    assert all(m["url"].startswith(f"{prefix}/runs/") for m in data["members"])
    assert [row["id"] for row in app_client.get(f"{prefix}/api/sweeps").json()["sweeps"]] == [sets["tuned"]]
    assert app_client.get(f"{prefix}/api/seed-sets/{sets['scratch']}").status_code == 404
    assert app_client.get(f"{prefix}/api/seed-sets/compare?sets={sets['tuned']},{sets['scratch']}").status_code == 404
