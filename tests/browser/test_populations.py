"""The population pages in Chromium: the seed-set page draws its bands, the sweep slider changes the
heatmap and the URL, two seed sets compare from the sweeps index, and the sweep table follows a cell
to its end without a reload. Synthetic records (``tests/population_support.py``) behind a live server.

Screenshots go to ``$CIRCUITBOARD_SCREENS`` (default /tmp/screens).
"""

from __future__ import annotations

import re

import pytest

from core.db import crud
from core.db.models import Run
from core.db.session import make_engine, session_scope
from tests.browser.conftest import SCREENS
from tests.population_support import grid_rows, seed_set_rows

STEPS = list(range(0, 3001, 100))


@pytest.fixture
def records(live_url, db_file_url):
    engine = make_engine(db_file_url)
    try:
        with session_scope(engine) as session:
            yield_ids = {
                "scratch": seed_set_rows(session, seeds=range(12), steps=STEPS, name="parity from scratch",
                                         midpoint=lambda seed: None if seed in (3, 8) else 1400 + 60 * seed, width=60),
                "tuned": seed_set_rows(session, seeds=range(12), steps=STEPS, name="parity from polynomial",
                                       midpoint=lambda seed: 120 + 8 * seed, width=8),
                "grid": grid_rows(session, axes={"d_model": [16, 32, 64, 128], "max_len": [3, 4, 5]}, seeds=[0, 1],
                                  steps=[0, 100, 200, 300]),
            }
        yield {"url": live_url, "engine": engine, **yield_ids}
    finally:
        engine.dispose()


def plot_data(page, element_id: str) -> list[dict]:
    return page.evaluate(f"() => document.getElementById({element_id!r}).data.map(t => ({{name: t.name, "
                         "fill: t.fill || null, z: t.z || null, n: (t.y || t.x || []).length}))")


def test_the_seed_set_page_draws_its_bands(page, records):
    page.goto(f"{records['url']}/seed-sets/{records['scratch']}")
    page.wait_for_selector("#fig-accuracy .main-svg")
    traces = plot_data(page, "fig-accuracy")
    assert [t["fill"] for t in traces] == [None, "tonexty", None, "tonexty", None] and traces[4]["n"] == len(STEPS)
    assert page.locator("#fig-accuracy g.fills path").count() == 2  # the min-max and the std bands, drawn
    assert page.locator("#fig-iteration g.fills path").count() == 4  # peaky_thres and peaky_abs bands
    assert page.locator("#fig-emergence .boxlayer path").count() >= 2
    seeds = page.locator("#seeds tbody tr")
    assert seeds.count() == 12 and page.locator("#seeds tr.formed-none").count() == 2
    assert seeds.nth(11).get_attribute("class") == "formed-none" and seeds.nth(0).get_attribute("class") == "formed-clear"
    page.screenshot(path=str(SCREENS / "seed_set.png"), full_page=True)
    assert page.problems == []


def test_the_sweep_slider_changes_the_heatmap_and_the_url(page, records):
    base = f"{records['url']}/sweeps/{records['grid']}"
    page.goto(base)
    page.wait_for_selector("#grid-0 .main-svg")
    final = plot_data(page, "grid-0")[0]["z"]
    assert page.input_value("#sweep-step") == "4" and page.text_content("#sweep-step-label") == "final"
    page.evaluate("() => { const s = document.getElementById('sweep-step'); s.value = '1'; "
                  "s.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => document.getElementById('sweep-step-label').textContent === 'step 100'")
    page.wait_for_function("() => document.getElementById('grid-0').layout.title.text.includes('step 100')")
    at_100 = plot_data(page, "grid-0")[0]["z"]
    assert at_100 != final and re.search(r"[?&]step=100(&|$)", page.url)
    page.select_option("#sweep-score", "peaky_abs")
    page.wait_for_function("() => document.getElementById('grid-2').layout.title.text.includes('peaky_abs')")
    assert "score=peaky_abs" in page.url and "step=100" in page.url
    page.screenshot(path=str(SCREENS / "sweep_slider.png"), full_page=True)
    page.goto(page.url)  # the copied link reopens the same view
    page.wait_for_selector("#grid-0 .main-svg")
    assert page.input_value("#sweep-step") == "1" and plot_data(page, "grid-0")[0]["z"] == at_100
    assert page.problems == []


def test_two_seed_sets_compare_from_the_sweeps_index(page, records):
    page.goto(f"{records['url']}/sweeps")
    assert page.locator("header nav a", has_text="Sweeps").count() == 1
    assert page.is_disabled("#compare-sets-button")
    page.check(f".pick-set[value='{records['scratch']}']")
    page.check(f".pick-set[value='{records['tuned']}']")
    page.click("#compare-sets-button")
    page.wait_for_url(re.compile(r"/seed-sets/compare\?sets="))
    page.wait_for_selector("#fig-accuracy .main-svg")
    names = {t["name"] for t in plot_data(page, "fig-accuracy") if t["fill"]}
    assert any("scratch" in n for n in names) and any("polynomial" in n for n in names)
    assert page.locator("#fig-accuracy g.fills path").count() == 4  # two bands for each set
    ratio = page.text_content(f"#populations tr[data-set='{records['tuned']}'] td.ratio")
    assert re.fullmatch(r"\s*[0-9.]+× fewer steps\s*", ratio) and float(ratio.split("×")[0]) > 5
    page.screenshot(path=str(SCREENS / "population_compare.png"), full_page=True)
    assert page.problems == []


def test_the_sweep_table_follows_a_cell_to_its_end_without_a_reload(page, records):
    with session_scope(records["engine"]) as session:
        run = session.query(Run).filter(Run.sweep_id == records["grid"]).order_by(Run.id).first()
        crud.update_run(session, run_id=run.id, status="RUNNING")
        run_id = run.id
    page.goto(f"{records['url']}/sweeps/{records['grid']}")
    row = page.locator("#sweep-cells-body tr", has=page.locator(f"a[href='/runs/{run_id}']"))
    assert row.locator(".status").text_content() == "running"
    with session_scope(records["engine"]) as session:
        crud.update_run(session, run_id=run_id, status="SUCCEEDED")
    page.wait_for_function(f"() => document.querySelector(\"#sweep-cells-body a[href='/runs/{run_id}']\")"
                           ".closest('tr').querySelector('.status').textContent === 'succeeded'", timeout=15000)
    assert page.text_content("#sweep-progress") == "24 / 24 done"
    assert page.problems == []
