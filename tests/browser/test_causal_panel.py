"""The causal panel draws an intervened accuracy of 0.00 (the key result) as a visible bar with its value.

A run with one stored ablation result whose intervened accuracy is 0.00 against a baseline of 1.00:
the overview's intervened bar has a height on screen and prints "0.00"; the hover keeps the true value.
"""

from __future__ import annotations

import pytest

from core.causal.results import put_result
from core.db.session import make_engine, session_scope, upgrade
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.browser.conftest import SCREENS, live_server
from tests.server.conftest import FAST

pytestmark = pytest.mark.browser


@pytest.fixture
def run_with_a_zero(db_file_url, tmp_path):
    upgrade(db_file_url)
    engine = make_engine(db_file_url)
    with session_scope(engine) as session:
        run_id = submit_run(session, spec=RunSpec.from_flat(FAST), name="zero").run_id
        result = {"mean": 0.0, "accuracy_by_length": {"4": 0.0, "5": 0.0},
                  "baseline": {"mean": 1.0, "accuracy_by_length": {"4": 1.0, "5": 1.0}}}
        put_result(session, run_id=run_id, step=20, intervention="ablate/mean", target="L1H0",
                   spec={"kind": "ablate"}, result=result)
    engine.dispose()
    server = live_server(db_file_url, tmp_path)
    yield next(server), run_id
    next(server, None)


def test_a_zero_accuracy_bar_is_visible_and_labelled(run_with_a_zero, page):
    url, run_id = run_with_a_zero
    page.goto(f"{url}/runs/{run_id}")
    page.wait_for_selector("#causal-overview .barlayer .point")
    heights = page.evaluate("""() => [...document.querySelectorAll('#causal-overview .barlayer .trace')].map(
        t => [...t.querySelectorAll('.point path')].map(p => p.getBoundingClientRect().height))""")
    assert len(heights) == 2 and all(h > 1.5 for h in heights[1]), heights  # the intervened 0.00 bar shows
    texts = page.locator("#causal-overview .barlayer .trace").nth(1).locator("text").all_text_contents()
    assert texts == ["0.00"]
    assert page.evaluate("() => document.getElementById('causal-overview').data[1].customdata") == [0.0]
    page.locator("#causal").screenshot(path=str(SCREENS / "causal_zero.png"))


def test_each_intervention_kind_shows_its_own_fields_on_their_own_row(run_with_a_zero, page):
    url, run_id = run_with_a_zero
    page.goto(f"{url}/runs/{run_id}")
    visible = lambda: page.evaluate("""() => [...document.querySelectorAll('#causal-form .causal-row[data-kinds]')]
        .filter(r => r.offsetParent !== null).map(r => r.querySelector('.row-title').textContent)""")
    page.wait_for_selector("#causal-form select[name=kind]")
    assert visible() == ["heads"]  # edge, the default kind
    page.select_option("#causal-form select[name=kind]", "pattern")
    assert visible() == ["heads", "pattern"]
    page.select_option("#causal-form select[name=kind]", "probe")
    assert visible() == ["probe"]
    rows = page.evaluate("() => [...document.querySelectorAll('#causal-form .causal-row')].filter(r => r.offsetParent)"
                         ".map(r => r.getBoundingClientRect().top)")
    assert rows == sorted(rows) and len(set(rows)) == len(rows)  # one row each, not one wrapped line
    page.locator("#causal-form").screenshot(path=str(SCREENS / "causal_form_probe.png"))
    assert page.problems == []
