"""Launch a run from the form and watch it live, in Chromium against a live server and worker.

Fill the New-run form from a preset (overridden down to a tiny spec), launch; the run page shows it
QUEUED; cancel and retry work from its buttons; only then does a local worker start, and the page follows the run to SUCCEEDED without a
reload; moving the step slider redraws the attention heatmap and writes the step into the URL.
The run is named with a script tag: no dialog may open. Screenshots go to /tmp/screens/.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SCREENS

pytestmark = pytest.mark.browser

NAME = "<script>alert(1)</script>"
TINY = {"max_len": "3", "n_train_per_len": "16", "n_test_per_len": "8", "probe_per_len": "2", "d_model": "16",
        "batch_size": "8", "steps": "40", "warmup_steps": "0", "eval_every": "10", "snapshot_every": "10",
        "checkpoint_every": "20", "eval_rows_per_len": ""}


def focused_z(page):
    return page.evaluate("() => JSON.stringify(document.getElementById('attention-focus').data[0].z)")


def test_launch_watch_and_scrub(live_url, start_worker, page):
    page.goto(live_url + "/runs/new")
    page.select_option("#f-preset", "fast-parity")
    assert page.input_value("#f-n_heads") == "4" and page.input_value("#f-problem") == "parity"  # the preset filled it
    page.wait_for_timeout(400)  # let the preset's own estimate land first
    d_model = page.input_value("#f-d_model")
    page.fill("#f-d_model", "65536")  # a bad spec: the estimate names the field, from the one 422 shape
    page.wait_for_function("() => /d_model: must be <= 2048/.test(document.getElementById('budget').textContent)")
    page.problems[:] = [p for p in page.problems if "status of 422" not in p]  # the browser logs the refused fetch
    page.fill("#f-d_model", d_model)
    page.wait_for_timeout(400)
    preset_estimate = page.text_content("#budget")
    for key, value in TINY.items():
        page.fill(f"#f-{key}", value)
    page.fill("input[name=name]", NAME)
    page.fill("input[name=tags]", "browser")
    page.wait_for_function("(before) => { const text = document.getElementById('budget').textContent;"
                           " return /parameters/.test(text) && text !== before; }", arg=preset_estimate)
    page.screenshot(path=str(SCREENS / "new_run.png"), full_page=True)
    page.click("#launch")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_url = page.url
    assert page.text_content("[data-live=status]") == "QUEUED"
    assert page.text_content(".run-name") == NAME  # shown as text, never run
    page.evaluate("() => { window.__sameDocument = true; }")

    page.click("#cancel")  # a fetch POST with the page's CSRF header; the page follows without reload
    page.wait_for_function("() => document.body.dataset.runStatus === 'CANCELLED'")
    assert page.is_hidden("#cancel") and page.is_visible("#retry")
    page.click("#retry")
    page.wait_for_function("() => document.body.dataset.runStatus === 'QUEUED'")

    start_worker()
    page.wait_for_function("() => document.body.dataset.runStatus === 'SUCCEEDED'", timeout=60_000)
    assert page.evaluate("() => window.__sameDocument === true")  # no reload happened
    assert page.text_content("[data-live=status]") == "SUCCEEDED"
    assert "test accuracy" in page.text_content("[data-live=verdict]")
    page.wait_for_function("() => document.getElementById('attention-focus').dataset.step === '40'")
    assert page.get_attribute("#step-slider", "max") == "4"  # snapshots at 0, 10, 20, 30, 40
    page.screenshot(path=str(SCREENS / "run.png"), full_page=True)

    last = focused_z(page)
    page.fill("#step-slider", "0")
    page.wait_for_function("() => document.getElementById('attention-focus').dataset.step === '0'")
    assert focused_z(page) != last  # the heatmap changed with the step
    assert "step=0" in page.url and page.text_content("#step-label") == "0"
    page.select_option("#length", "3")
    page.wait_for_function("() => new URL(location.href).searchParams.get('length') === '3'")

    page.goto(live_url + "/?tag=browser")
    assert page.locator("tr[data-run]").count() == 1
    page.screenshot(path=str(SCREENS / "runs.png"), full_page=True)
    page.goto(run_url + "?step=10&layer=0&head=1")  # a copied link reopens that view
    page.wait_for_function("() => document.getElementById('attention-focus').data")
    assert "L0H1 at step 10" in page.evaluate("() => document.getElementById('attention-focus').layout.title.text")
    assert not page.problems, page.problems
