"""The compare view: linked steps, the A - B map, overlaid curves and the config diff, over two trained runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from core.db import crud
from core.db.session import make_engine, session_scope
from core.snapshots import unpack
from server import figures_compare as F
from tests.server.conftest import FAST, train_into


@pytest.fixture(scope="module")
def second_run(served_url, trained_run) -> int:
    """Another tiny run, twice as long and named to try to break out of HTML."""
    return train_into(served_url, name='"><img src=x onerror=alert(1)>', spec={**FAST, "seed": 1, "steps": 40})


def block(served_url, run_id, step, layer, head, probe):
    engine = make_engine(served_url)
    with session_scope(engine, readonly=True) as session:
        snapshot = crud.get_snapshot(session, run_id=run_id, step=step)
        _, lengths = crud.get_probe_set(session, run_id=run_id)
        patterns = unpack(snapshot.data, snapshot.layout)
    engine.dispose()
    width = 2 * int(lengths[probe]) + 2  # the real tokens; NaN above the diagonal, where the figure is blank
    return np.where(np.tri(width, dtype=bool), np.round(patterns[probe, layer, head, :width, :width], 3), np.nan)


def test_the_difference_map_is_a_minus_b_on_a_zero_centred_scale(app_client, served_url, trained_run, second_run):
    response = app_client.get("/api/compare", params={"runs": f"{trained_run},{second_run}", "step": 10,
                                                      "layer": 1, "head": 0, "probe": 3})
    assert response.status_code == 200, response.text
    data = response.json()
    assert [p["step"] for p in data["panels"]] == [10, 10] and data["probe"] == 3
    a = np.array(block(served_url, trained_run, 10, 1, 0, 3), dtype=float)
    b = np.array(block(served_url, second_run, 10, 1, 0, 3), dtype=float)
    trace = data["difference"]["figure"]["data"][0]
    assert np.allclose(np.array(trace["z"], dtype=float), np.round(a - b, 3), equal_nan=True, atol=1e-3)
    assert (trace["zmin"], trace["zmid"], trace["zmax"]) == (-1, 0, 1) and trace["colorscale"] == "RdBu"
    assert data["difference"]["max_abs"] > 0  # two differently seeded models do not attend alike
    assert data["panels"][0]["figure"]["data"][0]["z"][0][1] is None  # above the diagonal: blank


def test_steps_link_by_step_or_by_fraction_of_training(app_client, trained_run, second_run):
    runs = f"{trained_run},{second_run}"
    same = app_client.get("/api/compare", params={"runs": runs, "step": 20}).json()
    assert [p["step"] for p in same["panels"]] == [20, 20]
    fraction = app_client.get("/api/compare", params={"runs": runs, "step": 20, "link": "fraction"}).json()
    assert [p["step"] for p in fraction["panels"]] == [20, 40]  # the end of a 20-step run, the end of a 40-step one
    half = app_client.get("/api/compare", params={"runs": runs, "step": 10, "link": "fraction"}).json()
    assert [p["step"] for p in half["panels"]] == [10, 20]


def test_curves_overlay_every_run_and_the_config_diff_lists_only_differences(app_client, trained_run, second_run):
    data = app_client.get("/api/compare", params={"runs": f"{trained_run},{second_run}"}).json()
    keys = [curve["key"] for curve in data["curves"]]
    assert keys == ["test/seq_acc", "train/loss", "peaky_thres/eoi_locator", "peaky_thres/iteration"]
    assert all(len(curve["figure"]["data"]) == 2 for curve in data["curves"])
    loss = data["curves"][1]["figure"]["data"]
    assert max(loss[0]["x"]) == 20 and max(loss[1]["x"]) == 40
    assert {row["key"] for row in data["config_diff"]} == {"seed", "steps"}
    assert {tuple(row["values"]) for row in data["config_diff"]} == {(0, 1), (20, 40)}


def test_the_page_embeds_its_data_inert(app_client, trained_run, second_run):
    page = app_client.get(f"/compare?runs={trained_run},{second_run}&step=10")
    assert page.status_code == 200
    assert "<img src=x" not in page.text and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
    embedded = re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', page.text, re.S)[1]
    assert "<" not in embedded  # tojson escapes every '<', so the data cannot close its script tag
    data = json.loads(embedded)
    assert data["step"] == 10 and data["difference"] is not None
    assert "&lt;img" in data["panels"][1]["title"]  # escaped for plotly's pseudo-HTML too


def test_bad_input_is_422_or_404_never_500(app_client, trained_run, second_run):
    assert app_client.get("/api/compare", params={"runs": str(trained_run)}).status_code == 422
    assert app_client.get("/api/compare", params={"runs": "1,x"}).status_code == 422
    assert app_client.get("/api/compare", params={"runs": "1,2,3,4,5"}).status_code == 422
    assert app_client.get("/api/compare", params={"runs": f"{trained_run},2147483000"}).status_code == 404
    assert app_client.get("/api/compare", params={"runs": f"{trained_run},{second_run}", "link": "x"}).status_code == 422
    missing = app_client.get("/api/compare", params={"runs": f"{trained_run},{second_run}", "layer": 9}).json()
    assert missing["difference"] is None and "no head L9H" in missing["panels"][0]["error"]
    assert app_client.get("/compare?runs=1").status_code == 422
    assert app_client.get("/compare").status_code == 200  # a form to pick runs


def test_linked_step_picks_the_nearest_snapshot_and_the_earlier_on_a_tie():
    assert F.linked_step([0, 10, 20], step=14, reference_total=20, total=20, mode="step") == 10
    assert F.linked_step([0, 10, 20], step=15, reference_total=20, total=20, mode="step") == 10
    assert F.linked_step([0, 50, 100], step=10, reference_total=20, total=100, mode="fraction") == 50
    assert F.linked_step([], step=10, reference_total=20, total=20, mode="step") is None


def test_config_diff_and_escaped_text():
    assert F.config_diff([{"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}]) == [
        {"key": "b", "values": [2, 3]}, {"key": "c", "values": [None, 4]}]
    assert F.run_title(3, '<script>"x"&\'') == "#3 &lt;script&gt;&#34;x&#34;&amp;&#39;"  # server.figures.escape
