"""The New-run form in Chromium: one Launch names every bad field at once, each beside its input.

Bad at once: d_model 30 with n_heads 4 (a pair: named on both), steps "soon" (does not parse), lr -1
(out of bound), and initialise from run 99, which does not exist. ``1e3`` for eval_every is a number.
Nothing is queued. Screenshot: /tmp/screens/new_run_errors.png.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import SCREENS

pytestmark = pytest.mark.browser


def test_every_bad_field_is_named_at_once(live_url, page):
    page.goto(live_url + "/runs/new")
    page.select_option("#f-preset", "fast-parity")
    for key, value in {"d_model": "30", "n_heads": "4", "steps": "soon", "lr": "-1", "eval_every": "1e3",
                       "init_run": "99", "init_step": "0"}.items():
        page.fill(f"#f-{key}", value)
    page.click("#launch")
    page.wait_for_selector("#form-errors")
    errors = {field: page.text_content(f"[data-error-for={field}]")
              for field in ("d_model", "n_heads", "steps", "lr", "init_from")}
    assert errors["d_model"].startswith("must be divisible by n_heads (4)")
    assert errors["n_heads"].startswith("must divide d_model (30) evenly")
    assert errors["steps"].startswith("must be an integer")
    assert errors["lr"].startswith("must be > 0")
    assert errors["init_from"].startswith("there is no run 99")
    assert page.locator("[data-error-for=eval_every]").count() == 0  # 1e3 is a whole number
    assert "5 fields to fix" in page.text_content("#form-errors")
    assert page.input_value("#f-steps") == "soon"  # what was typed stays
    page.screenshot(path=str(SCREENS / "new_run_errors.png"), full_page=True)
    page.goto(live_url + "/")
    assert page.locator("tr[data-run]").count() == 0  # nothing was queued
    page.problems[:] = [p for p in page.problems if "422" not in p]  # the refused POST and estimate
    assert page.problems == []
