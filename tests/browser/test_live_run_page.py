"""A run page follows a run while it trains, without a reload: the peakiness plot, the summary and the loss.

The records are written straight into the served database as a worker writes them (a claimed job,
its progress, metric rows: ``tests/server/test_live_run.py``'s helpers), so the test says exactly
what exists when; the page polls and must show each new record. Also: the loss's log axis labels its
ticks in full, and the peakiness hover names the whole trace. Screenshot: /tmp/screens/live_run.png.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from core.db import crud, jobs
from tests.browser.conftest import SCREENS
from tests.server.test_live_run import start_run, write

pytestmark = pytest.mark.browser

def loss(step: int) -> float:
    return 2.0 * 0.97 ** step  # 2.0 at the start, 0.095 at step 100: the log axis spans more than a decade


TRACES = "(id) => (document.getElementById(id).data || []).length"
LAST_X = "(id) => { const d = document.getElementById(id).data || []; return d.length ? Math.max(...d[0].x) : null; }"


def test_peakiness_summary_and_loss_move_while_the_run_trains(live_url, db_file_url, page):
    url = make_url(db_file_url)
    run_id, job_id, token = start_run(url, name="live")

    def record(step: int, rows: list[tuple[str, int, float]]) -> None:
        write(url, lambda s: (crud.upsert_metrics(s, run_id=run_id, rows=rows),
                              jobs.report_progress(s, job_id=job_id, token=token,
                                                   progress={"step": step, "total": 400, "steps_per_s": 20.0,
                                                             "eta_s": (400 - step) / 20, "loss": rows[-1][2]})))

    record(10, [("train/loss", s, loss(s)) for s in range(1, 11)])
    page.goto(f"{live_url}/runs/{run_id}")
    page.evaluate("() => { window.__sameDocument = true; }")
    assert page.text_content("[data-live=status]") == "RUNNING"
    assert "No summary yet" in page.text_content("[data-live=verdict]")
    assert page.evaluate(TRACES, "fig-peaky") == 0

    # an evaluation: the circuit heads' scores and the test accuracy
    record(100, [("score/eoi_locator/peaky_thres/L0H1", 100, 0.95), ("score/iteration/peaky_thres/L1H0", 100, 0.62),
                 ("score/iteration/peaky_thres/L1H1", 100, 0.1), ("test/seq_acc", 100, 0.41),
                 *[("train/loss", s, loss(s)) for s in range(11, 101)]])
    page.wait_for_function(f"() => ({TRACES})('fig-peaky') === 2", timeout=20_000)
    page.wait_for_function("() => /partial iteration head so far at L1H0/.test("
                           "document.querySelector('[data-live=verdict]').textContent)", timeout=20_000)
    page.wait_for_selector("table.heads", timeout=20_000)  # the heads table of the summary so far
    heads = page.text_content("table.heads")
    assert "L1H0" in heads and "L0H1" in heads and "not yet" in heads  # the iteration head has not emerged
    assert page.evaluate(LAST_X, "fig-loss") == 100

    # a log axis labels its ticks in full ("0.5 0.2", never "5 2"); the hover names the whole trace
    ticks = page.evaluate("() => [...document.querySelectorAll('#fig-loss .ytick text')].map((t) => t.textContent)")
    assert len(ticks) >= 3 and all(0.05 <= float(t) <= 2 for t in ticks), ticks  # the loss runs 2.0 .. 0.095
    page.evaluate("() => Plotly.Fx.hover('fig-peaky', [{curveNumber: 1, pointNumber: 0}])")
    assert "iteration head L1H0" in page.text_content("#fig-peaky .hoverlayer")

    # the loss moves between evaluations
    record(180, [("train/loss", s, loss(s)) for s in range(101, 181)])
    page.wait_for_function(f"() => ({LAST_X})('fig-loss') === 180", timeout=20_000)
    assert "ETA" in page.text_content("[data-live=eta]")

    # past the last step, the final evaluation: no "1 s" ETA
    record(400, [("train/loss", 400, 0.2)])
    page.wait_for_function("() => /final evaluation/.test(document.querySelector('[data-live=eta]').textContent)",
                           timeout=20_000)
    assert "ETA" not in page.text_content("[data-live=eta]")
    assert page.evaluate("() => window.__sameDocument === true")  # all without a reload
    page.screenshot(path=str(SCREENS / "live_run.png"), full_page=True)
    page.locator("#curves").screenshot(path=str(SCREENS / "live_run_curves.png"))
    assert page.problems == []


def test_the_eta_holds_steady_while_the_workers_instant_rate_swings(live_url, db_file_url, page):
    """The page's clock is Playwright's: every poll sees 10 more steps (6.7 steps/s) while the worker's
    own steps/s swings between 0.5 and 50 (an evaluation pause, then a burst). The ETA, from the steps
    done over the last minute, reads about 9 minutes throughout instead of jumping between 2 h and 1 min."""
    url = make_url(db_file_url)
    run_id, job_id, token = start_run(url, name="eta")
    total = 4000

    def report(step: int, instant: float) -> None:
        write(url, lambda s: jobs.report_progress(s, job_id=job_id, token=token, progress={
            "step": step, "total": total, "steps_per_s": instant, "eta_s": (total - step) / instant}))

    report(100, 50.0)
    page.clock.install()
    page.goto(f"{live_url}/runs/{run_id}")
    shown = []
    for i in range(1, 16):
        step = 100 + 10 * i
        report(step, 0.5 if i % 2 else 50.0)
        page.clock.run_for(1500)  # one poll
        page.wait_for_function("(step) => document.querySelector('[data-live=progress-text]').textContent"
                               ".startsWith('step ' + step.toLocaleString('en'))", arg=step)
        shown.append(page.text_content("[data-live=eta]"))
    late = [text.split("ETA ")[1].split(" ·")[0] for text in shown[8:]]  # once the 10 s window has filled
    assert all(eta in ("about 9 min", "about 10 min") for eta in late), shown
    assert page.problems == []
