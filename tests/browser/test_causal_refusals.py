"""The causal panel's form: a head the run does not have is refused there, naming the field; a good one queues.

A really trained tiny run (2 layers of 1 head). Heads "L9H9" with steps "soon" answers one 422 naming
both: the step in a run spec's words (never pydantic's), the head against the run's shape; both inputs
are outlined with their message as tooltip; nothing is queued. Then "L1H0" at the last step is queued. Screenshot: /tmp/screens/causal_refused.png.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from tests.browser.conftest import SCREENS
from tests.server.conftest import train_into

pytestmark = pytest.mark.browser

STATUS = "() => document.getElementById('causal-status').textContent"


def test_an_unknown_head_is_refused_naming_the_field(live_url, db_file_url, page):
    run_id = train_into(make_url(db_file_url), name="causal")
    page.goto(f"{live_url}/runs/{run_id}")
    form = page.locator("#causal-form")
    form.locator("select[name=kind]").select_option("ablate")
    form.locator("input[name=heads]").fill("L9H9")
    form.locator("input[name=steps]").fill("soon")
    form.locator("button[type=submit]").click()
    page.wait_for_function(f"() => ({STATUS})().startsWith('refused')")
    status = page.evaluate(STATUS)  # both at once: a value in a run spec's words, and what does not fit this run
    assert status == ("refused: steps: must be a step >= 0, 'last' or 'all' (got 'soon'); "
                      "heads: L9H9 is not a head of this run: this run has 2 layers (L0..L1) of 1 head (H0..H0)")
    assert "invalid" in form.locator("input[name=steps]").get_attribute("class")
    heads = form.locator("input[name=heads]")
    assert "invalid" in heads.get_attribute("class") and "L9H9 is not a head" in heads.get_attribute("title")
    page.locator("#causal").screenshot(path=str(SCREENS / "causal_refused.png"))
    page.problems[:] = [p for p in page.problems if "422" not in p]  # the browser logs the refused POST

    heads.fill("L1H0")
    form.locator("input[name=steps]").fill("last")
    form.locator("input[name=rows_per_len]").fill("4")
    form.locator("button[type=submit]").click()
    page.wait_for_function(f"() => /queued/.test(({STATUS})())")
    assert page.locator("#causal-form .invalid").count() == 0
    assert page.problems == []
