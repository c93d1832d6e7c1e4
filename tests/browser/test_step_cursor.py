"""The run page's one step cursor, and its figure exports, in Chromium against a live server.

A real trained run (FAST for 60 steps: snapshots at 0, 10, ..., 60) is served from a SQLite file.
Moving the step slider draws the cursor on every curve (a layout shape named "cursor", read back from
plotly) and outlines that step's column in both emergence matrices, and puts ``?step=`` in the URL;
a real mouse click on a point of the loss curve moves the slider to the nearest snapshot step and
redraws the attention maps there. The export links save SVG and PNG (Playwright downloads), and the
GIF link downloads the chosen head over training, one frame per snapshot, which Chromium decodes too.
A share link's read-only page has the same cursor, and its GIF link stays under the link. A live run
(records written as a worker writes them) moves the cursor to each new snapshot.
Screenshots: /tmp/screens/cursor_*.png and /tmp/cursor_shot.png (the page at a middle step).
"""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
from sqlalchemy.engine import make_url

from core.db import crud, jobs
from core.db.session import make_engine, session_scope, upgrade
from core.snapshots import pack
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.browser.conftest import SCREENS, live_server
from tests.browser.test_share_and_xss import train
from tests.core.test_gif import read_gif
from tests.server.conftest import FAST
from tests.server.test_live_run import start_run, write

pytestmark = pytest.mark.browser

STEPS = [0, 10, 20, 30, 40, 50, 60]
CURVES = ["fig-loss", "fig-peaky", "fig-acc-test", "fig-acc-train"]
MATRICES = ["fig-emergence-eoi_locator", "fig-emergence-iteration"]
CURSOR = ("(id) => { const el = document.getElementById(id);"
          " const s = (el.layout.shapes || []).filter((s) => s.name === 'cursor'); return s.length ? s[0] : null; }")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cursor")
    db_url = f"sqlite:///{folder / 'circuitboard.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        run_id = submit_run(session, spec=RunSpec.from_flat({**FAST, "steps": 60}), name="cursor").run_id
    engine.dispose()
    train(db_url, run_id)
    server = live_server(db_url, folder)
    try:
        yield {"url": next(server), "run": run_id}
    finally:
        next(server, None)


def open_run(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => { const el = document.getElementById('attention-focus');"
                           " return el && el.dataset.step !== undefined && el.data; }")
    page.wait_for_function(f"() => ({CURSOR})('fig-loss') !== null")


def cursor_at(page, step: int, *, in_url: bool = True) -> None:
    """Every curve's line and both matrices' outline are at ``step``; the maps and the URL say it too."""
    page.wait_for_function(f"() => document.getElementById('attention-focus').dataset.step === '{step}'")
    for fig in CURVES:
        shape = page.evaluate(CURSOR, fig)
        assert shape and shape["type"] == "line" and shape["x0"] == shape["x1"] == step, (fig, shape)
    for fig in MATRICES:
        shape = page.evaluate(CURSOR, fig)
        assert shape and shape["type"] == "rect" and shape["x0"] < step < shape["x1"], (fig, shape)
        assert shape["x1"] - shape["x0"] == pytest.approx(10)  # one column: halfway to each neighbour
    assert f"step={step}" in page.url or not in_url
    assert page.text_content("#step-label") == f"{step:,}"
    assert page.input_value("#step-slider") == str(STEPS.index(step))


def test_the_slider_moves_the_cursor_on_every_curve_the_matrix_and_the_url(served, page):
    open_run(page, f"{served['url']}/runs/{served['run']}")
    cursor_at(page, 60, in_url=False)  # a finished run opens at its last snapshot
    page.locator("#step-slider").fill("3")
    cursor_at(page, 30)
    assert page.evaluate(CURSOR, "fig-peaky") is not None
    bar = page.evaluate("() => document.getElementById('fig-peaky').layout.shapes.filter((s) => s.name !== 'cursor')")
    assert len(bar) == 1 and bar[0]["y0"] == 0.9  # the figure's own 0.9 bar stays
    page.locator("#curves").screenshot(path=str(SCREENS / "cursor_curves.png"))
    page.locator("#emergence").screenshot(path=str(SCREENS / "cursor_emergence.png"))
    # the URL reopens the same step
    open_run(page, page.url)
    cursor_at(page, 30)
    # a step between snapshots opens the nearest one
    open_run(page, f"{served['url']}/runs/{served['run']}?step=18")
    cursor_at(page, 20)
    assert page.problems == []


def test_clicking_a_point_of_a_curve_moves_the_cursor_to_the_nearest_snapshot(served, page):
    open_run(page, f"{served['url']}/runs/{served['run']}")
    cursor_at(page, 60, in_url=False)
    page.locator("#fig-loss").screenshot(path=str(SCREENS / "cursor_before_click.png"))
    point = page.evaluate("""() => {
        const el = document.getElementById('fig-loss'), trace = el.data[0];
        const i = trace.x.map((x, j) => [Math.abs(x - 33), j]).sort((a, b) => a[0] - b[0])[0][1];
        const fl = el._fullLayout, box = el.getBoundingClientRect();  // the y axis is a log axis
        return {step: trace.x[i], x: box.left + fl._size.l + fl.xaxis.l2p(trace.x[i]),
                y: box.top + fl._size.t + fl.yaxis.l2p(Math.log10(trace.y[i]))}; }""")
    nearest = min(STEPS, key=lambda s: (abs(s - point["step"]), s))
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])
    cursor_at(page, nearest)
    title = page.evaluate("() => document.getElementById('attention-focus').layout.title.text")
    assert f"at step {nearest}" in title
    # a cell of the emergence matrix moves it as well (and picks that head)
    page.evaluate("() => document.getElementById('fig-emergence-iteration').emit('plotly_click',"
                  " {points: [{x: 50, y: 'L1H0'}]})")
    cursor_at(page, 50)
    assert "layer=1" in page.url and "head=0" in page.url
    assert page.problems == []


def test_every_figure_saves_as_svg_and_png_and_the_head_as_a_gif(served, page):
    open_run(page, f"{served['url']}/runs/{served['run']}?step=20")
    exported = page.evaluate("() => [...document.querySelectorAll('[data-export]')].map((e) => e.dataset.export)")
    assert set(CURVES + MATRICES + ["attention-grid", "attention-focus"]) <= set(exported)
    assert page.locator("[data-export] a[data-format=svg]").count() == len(exported)
    with page.expect_download() as svg:
        page.locator('[data-export="fig-loss"] a[data-format=svg]').click()
    assert svg.value.suggested_filename == f"run{served['run']}-loss.svg"
    text = open(svg.value.path(), encoding="utf-8").read()
    assert text.lstrip().startswith("<svg") and "training loss" in text
    with page.expect_download() as png:
        page.locator('[data-export="attention-focus"] a[data-format=png]').click()
    assert re.fullmatch(rf"run{served['run']}-step20-probe\d+-L1H0\.png", png.value.suggested_filename)
    assert open(png.value.path(), "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"

    href = page.get_attribute("#attention-gif", "href")
    assert f"/api/runs/{served['run']}/attention.gif?layer=1&head=0&probe=" in href
    with page.expect_download() as animated:
        page.locator("#attention-gif").click()
    assert animated.value.suggested_filename.endswith(".gif")
    assert len(read_gif(open(animated.value.path(), "rb").read())["frames"]) == len(STEPS)
    size = page.evaluate("""async (href) => { const img = new Image(); img.src = href; await img.decode();
                            return [img.naturalWidth, img.naturalHeight]; }""", href)
    assert size[0] >= 200 and size[1] >= 200  # Chromium decodes it too
    page.locator("#attention").screenshot(path=str(SCREENS / "cursor_attention.png"))
    page.select_option("#score", "peaky_abs")  # a matrix's file names the score it shows
    assert page.get_attribute('[data-export="fig-emergence-iteration"]', "data-filename") == \
        f"run{served['run']}-emergence-iteration-peaky_abs"
    page.wait_for_function("() => document.getElementById('fig-emergence-iteration').data[0].colorbar.title.text"
                           f" === 'peaky_abs' && ({CURSOR})('fig-emergence-iteration') !== null")  # redrawn, cursor too
    assert page.problems == []


def test_a_share_link_has_the_same_cursor_and_gif(served, page):
    made = httpx.post(f"{served['url']}/api/runs/{served['run']}/shares", json={"state": "step=40"},
                      headers={"Authorization": "Bearer cli"})
    assert made.status_code == 201, made.text
    shared = served["url"] + made.json()["url"]
    open_run(page, shared)
    cursor_at(page, 40)
    assert "/s/" in page.get_attribute("#attention-gif", "href")
    assert httpx.get(served["url"] + page.get_attribute("#attention-gif", "href")).content[:6] == b"GIF89a"
    page.locator("#step-slider").fill("1")
    cursor_at(page, 10)
    assert "/s/" in page.url
    assert page.problems == []


def test_a_live_run_moves_the_cursor_to_each_new_snapshot(live_url, db_file_url, page):
    url = make_url(db_file_url)
    run_id, job_id, token = start_run(url, name="live cursor")
    lengths = np.array([1, 2, 3])
    rng = np.random.default_rng(0)

    def snapshot(step: int) -> None:
        patterns = np.tril(rng.random((3, 2, 2, 8, 8))) + 1e-3
        blob, layout = pack(patterns / patterns.sum(-1, keepdims=True), lengths)
        write(url, lambda s: (crud.put_snapshot(s, run_id=run_id, step=step, data=blob, shape=list(patterns.shape),
                                                layout=layout),
                              crud.upsert_metrics(s, run_id=run_id, rows=[("train/loss", step, 1.0 / (1 + step))]),
                              jobs.report_progress(s, job_id=job_id, token=token, progress={"step": step, "total": 400})))

    snapshot(0)
    open_run(page, f"{live_url}/runs/{run_id}")
    snapshot(100)
    page.wait_for_function("() => document.getElementById('attention-focus').dataset.step === '100'", timeout=20_000)
    page.wait_for_function(f"() => {{ const s = ({CURSOR})('fig-loss'); return s && s.x0 === 100; }}", timeout=20_000)
    assert "step=100" in page.url and page.input_value("#step-slider") == "1"
    assert page.problems == []


def test_screenshot_of_the_run_page_at_a_middle_step(served, page):
    open_run(page, f"{served['url']}/runs/{served['run']}?step=30")
    cursor_at(page, 30)
    page.wait_for_timeout(300)
    page.screenshot(path="/tmp/cursor_shot.png", full_page=True)  # last: no click follows it
