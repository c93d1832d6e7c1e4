"""Compare in Chromium: A - B only between runs that read the same input sequence, runs in the order ticked.

Three really trained tiny runs: parity (seed 0), parity (seed 1) and polynomial. Ticking polynomial,
then parity, on the runs list opens /compare?runs=<poly>,<parity> in that order; its A - B panel is
empty and says why (different input sequences). Two parity seeds read the same probe: their A - B is
drawn with its largest |A - B|. Screenshots: /tmp/screens/runs_ticked.png, compare_refused.png, compare_same.png.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy.engine import make_url

from tests.browser.conftest import SCREENS
from tests.server.conftest import FAST, train_into

pytestmark = pytest.mark.browser

NOTE = "() => document.getElementById('difference-note').textContent"
DRAWN = "() => (document.getElementById('difference').data || []).length"


def test_a_minus_b_only_for_the_same_input_sequence(live_url, db_file_url, page):
    url = make_url(db_file_url)
    parity = train_into(url, name="parity")
    parity_seed1 = train_into(url, name="parity seed 1", spec={**FAST, "seed": 1})
    polynomial = train_into(url, name="polynomial", spec={**FAST, "problem": "polynomial"})

    page.goto(live_url + "/")
    page.check(f"tr[data-run='{polynomial}'] input.pick")
    page.check(f"tr[data-run='{parity}'] input.pick")
    assert page.text_content("#compare-hint") == f"A = #{polynomial}, B = #{parity} (in the order ticked)"
    page.screenshot(path=str(SCREENS / "runs_ticked.png"))
    page.click("#compare-button")
    page.wait_for_url(re.compile(r"/compare\?"))
    assert f"runs={polynomial}%2C{parity}" in page.url  # the order ticked, not the table's order
    page.wait_for_function(f"() => ({NOTE})().length > 0")
    note = page.evaluate(NOTE)
    assert note.startswith("no A - B: the two runs read different input sequences here")
    assert "[poly]" in note and "[parity]" in note and "largest" not in note
    assert page.evaluate(DRAWN) == 0
    page.screenshot(path=str(SCREENS / "compare_refused.png"), full_page=True)

    page.goto(f"{live_url}/compare?runs={parity},{parity_seed1}")
    page.wait_for_function(f"() => ({NOTE})().startsWith('largest |A - B|')")
    assert page.evaluate(DRAWN) == 1
    page.locator("#curves").screenshot(path=str(SCREENS / "compare_same.png"))
    assert page.problems == []
