"""The New-run form launches a seed set, a bad seed range, and a study (Chromium).

Seeds alone make a seed set: the button says how many runs it queues, the pack size reaches every
member's job, and the page that follows is the sweep's. A backwards range is named before anything
is queued; a study queues its arms. Screenshot: /tmp/screens/new_run_seed_set.png.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db.models import Job, Sweep
from core.db.session import make_engine, session_scope
from tests.browser.conftest import SCREENS

pytestmark = pytest.mark.browser


def sweeps(db_file_url: str) -> list[tuple[dict, dict]]:
    engine = make_engine(db_file_url)
    try:
        with session_scope(engine, readonly=True) as session:
            rows = list(session.scalars(select(Sweep).order_by(Sweep.id)))
            jobs = {job.payload.get("sweep_id"): job.payload for job in session.scalars(select(Job))
                    if job.kind == "sweep"}
            return [(row.axes, jobs.get(row.id, {})) for row in rows]
    finally:
        engine.dispose()


def test_seeds_make_a_seed_set_with_its_pack_size(live_url, db_file_url, page):
    page.goto(live_url + "/runs/new")
    page.select_option("#f-preset", "fast-parity")
    page.fill("#f-steps", "40")
    page.fill("#f-warmup_steps", "0")
    page.fill("#f-sweep_seeds", "5-2")
    assert page.text_content("#launch") == "Launch a seed set"  # a backwards range names no seed to count
    page.click("#launch")
    page.wait_for_selector("#sweep-errors:not([hidden])")
    assert "seeds: the range 5-2 runs backwards; write 2-5" in page.text_content("#sweep-errors")
    assert sweeps(db_file_url) == []  # nothing queued

    page.fill("#f-sweep_seeds", "0-3")
    page.fill("#f-pack_size", "4")
    assert page.text_content("#launch") == "Launch 4 runs (a seed set)"
    assert page.text_content("#budget-scope") == "4 runs, each: "
    assert page.is_hidden("#sweep-errors")  # edited since the refusal
    page.locator("#sweep").screenshot(path=str(SCREENS / "new_run_seed_set.png"))
    page.click("#launch")
    try:
        page.wait_for_url("**/sweeps/*", timeout=30000)
    except Exception:
        raise AssertionError((page.url, page.is_hidden("#sweep-errors"), page.text_content("#sweep-errors"),
                              page.problems, sweeps(db_file_url), page.is_disabled("#launch")))
    [(axes, payload)] = sweeps(db_file_url)
    assert axes == {"seed": [0, 1, 2, 3]} and payload["pack_size"] == 4
    page.problems[:] = [p for p in page.problems if "422" not in p]  # the refused POST
    assert page.problems == []


def test_a_study_is_launched_from_the_form(live_url, db_file_url, page):
    page.goto(live_url + "/runs/new")
    page.select_option("#f-study", "paper-scaling-cpu")
    assert page.text_content("#launch") == "Launch study paper-scaling-cpu"
    page.click("#launch")
    page.wait_for_url("**/sweeps/*")
    [(axes, _)] = sweeps(db_file_url)
    assert len(axes["max_len"]) * len(axes["d_model"]) == 36
    assert page.problems == []
