"""Two small readings of runs: where a run's spec came from (never "preset none"), and compare's A - B rule."""

from __future__ import annotations

import re

import pytest

from core.db import crud
from core.db.models import Sweep
from core.db.session import make_engine, session_scope
from tests.server.conftest import FAST, train_into


def origin_line(html: str) -> str:
    return re.sub(r"\s+", " ", re.search(r'<p class="muted">(parity[^<]*)', html)[1])


def test_the_run_page_says_where_its_spec_came_from(app_client, served_url):
    engine = make_engine(served_url)
    try:
        with session_scope(engine) as session:
            sweep = Sweep(name="grid", spec=dict(FAST), axes={"seed": [0, 1]})
            session.add(sweep)
            session.flush()
            cell = crud.create_run(session, spec=dict(FAST), sweep_id=sweep.id).id
            own = crud.create_run(session, spec=dict(FAST)).id
            preset = crud.create_run(session, spec=dict(FAST), preset="fast-parity").id
            sweep_id = sweep.id
    finally:
        engine.dispose()
    assert origin_line(app_client.get(f"/runs/{cell}").text).startswith(f"parity · a cell of sweep #{sweep_id} ·")
    assert origin_line(app_client.get(f"/runs/{own}").text).startswith("parity · its own spec (no preset) ·")
    assert origin_line(app_client.get(f"/runs/{preset}").text).startswith("parity · preset fast-parity ·")
    for run_id in (cell, own, preset):
        assert "preset none" not in app_client.get(f"/runs/{run_id}").text


@pytest.fixture(scope="module")
def polynomial_run(served_url, trained_run) -> int:
    return train_into(served_url, name="poly", spec={**FAST, "problem": "polynomial"})


def test_no_a_minus_b_between_different_input_sequences(app_client, trained_run, polynomial_run):
    data = app_client.get("/api/compare", params={"runs": f"{trained_run},{polynomial_run}"}).json()
    assert data["difference"] is None
    assert data["why_no_difference"].startswith("no A - B: the two runs read different input sequences here")
    a, b = data["panels"][0], data["panels"][1]
    assert " ".join(a["labels"]) in data["why_no_difference"] and " ".join(b["labels"]) in data["why_no_difference"]


def test_no_a_minus_b_in_either_order_and_the_reason_for_a_missing_map(app_client, trained_run, polynomial_run):
    again = app_client.get("/api/compare", params={"runs": f"{polynomial_run},{trained_run}", "probe": 0}).json()
    assert again["difference"] is None  # either order
    missing = app_client.get("/api/compare", params={"runs": f"{trained_run},{polynomial_run}", "head": 5}).json()
    assert missing["why_no_difference"].startswith(f"no A - B: #{trained_run} has no map here (this run has no head")
