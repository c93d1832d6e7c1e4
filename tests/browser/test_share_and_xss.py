"""Hostile run names render inert everywhere; compare shows the difference map; a share link is read-only.

In Chromium against a live server on a SQLite file holding real tiny trained runs named
``<script>alert(1)</script>`` and ``"><img src=x onerror=alert(1)>`` (and a sweep of two trained
cells with the second name): every page (runs list, run page, compare, sweep, links page, shared
views) opens with no dialog and no console or page error. Compare draws A - B; the share button
makes a link that a fresh browser context (no cookies) opens to the same view and state, and
cannot use to change anything. Screenshots go to /tmp/screens/.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from core.db.models import Run
from core.db.session import make_engine, session_scope
from core.specs.sweep import SweepSpec
from core.sweeps import create_sweep, expand_sweep
from tests.browser.conftest import SCREENS, live_server
from tests.server.conftest import FAST

pytestmark = pytest.mark.browser

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def train(url: str, run_id: int) -> None:
    torch = pytest.importorskip("torch")
    from core.recording import execute_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    engine = make_engine(url)
    try:
        assert execute_training(engine, run_id) == "SUCCEEDED"
    finally:
        engine.dispose()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    """A live server on a SQLite file holding two trained runs with hostile names and a two-cell trained sweep.

    Built once for the module (training five tiny runs and starting uvicorn is most of the cost).
    """
    from core.db.session import upgrade
    from core.specs.run import RunSpec
    from core.submit import submit_run

    folder = tmp_path_factory.mktemp("xss")
    db_url = f"sqlite:///{folder / 'circuitboard.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        a = submit_run(session, spec=RunSpec.from_flat(FAST), name=SCRIPT, tags=[SCRIPT]).run_id
        b = submit_run(session, spec=RunSpec.from_flat({**FAST, "seed": 1, "steps": 40}), name=IMG,
                       notes=IMG, tags=[IMG]).run_id
        spec = SweepSpec.parse({"overrides": FAST, "axes": {"d_model": [16, 24]}})
        sweep = create_sweep(session, spec=spec, name=IMG).sweep_id
        expand_sweep(session, sweep_id=sweep)
        cells = list(session.scalars(select(Run.id).where(Run.sweep_id == sweep)))
    engine.dispose()
    for run_id in (a, b, *cells):
        train(db_url, run_id)
    server = live_server(db_url, folder)
    try:
        yield {"url": next(server), "a": a, "b": b, "sweep": sweep, "cell": cells[0]}
    finally:
        next(server, None)


@pytest.fixture
def live_url(recorded) -> str:
    return recorded["url"]


def open_inert(page, url: str, screenshot: str | None = None) -> None:
    """Open ``url``; fail on a dialog, a console or page error, or an element the names smuggled in."""
    response = page.goto(url)
    assert response.status == 200, f"{url}: {response.status}"
    page.wait_for_load_state("networkidle")
    assert page.locator("img[src='x']").count() == 0, url
    assert page.evaluate("() => [...document.scripts].every(s => !s.textContent.includes('alert(1)') || s.type === 'application/json')"), url
    assert page.problems == [], f"{url}: {page.problems}"
    if screenshot:
        page.screenshot(path=str(SCREENS / screenshot), full_page=True)


def test_hostile_names_are_inert_on_every_page(live_url, recorded, page):
    a, b = recorded["a"], recorded["b"]
    pages = {f"/?q={SCRIPT}": None, "/": "runs_xss.png", f"/runs/{a}": None, f"/runs/{b}": None,
             f"/compare?runs={a},{b}": None, f"/runs/{a}/shares": "shares.png", f"/sweeps/{recorded['sweep']}": "sweep.png"}
    for path, screenshot in pages.items():
        open_inert(page, live_url + path, screenshot)
    assert page.locator("td", has_text=IMG).count() >= 1  # the sweep's cell runs' names show as text


def test_compare_shows_the_difference_map_and_keeps_state_in_the_url(live_url, recorded, page):
    a, b = recorded["a"], recorded["b"]
    open_inert(page, f"{live_url}/compare?runs={a},{b}&layer=1&head=0")
    page.wait_for_function("() => document.getElementById('difference').data !== undefined")
    trace = page.evaluate("() => document.getElementById('difference').data[0]")
    assert trace["zmid"] == 0 and trace["zmin"] == -1 and trace["zmax"] == 1
    assert any(v not in (None, 0) for row in trace["z"] for v in row)  # two seeds attend differently
    page.screenshot(path=str(SCREENS / "compare.png"), full_page=True)
    page.fill("#step", "1")  # the reference's second snapshot: step 10
    page.wait_for_function("() => document.getElementById('step-label').textContent === '10'")
    page.check("input[name=link][value=fraction]")
    page.wait_for_function("() => /link=fraction/.test(location.search) && /step=10/.test(location.search)")
    page.wait_for_function("() => window.CB.compare.data().panels[1].step === 20")  # 10 of 20 steps ~ 20 of 40
    assert page.problems == []


def test_a_shared_compare_opens_the_same_view_and_changes_nothing(live_url, recorded, page):
    a, b = recorded["a"], recorded["b"]
    open_inert(page, f"{live_url}/compare?runs={a},{b}&step=10&link=fraction&layer=1&head=0&probe=1")
    page.click("button[data-share-kind=compare]")
    page.wait_for_function("() => document.querySelector('.share-result input').value.includes('/s/')")
    link = page.input_value(".share-result input")
    assert re.search(r"/s/[A-Za-z0-9_-]{43}/compare\?runs=", link) and "step=10" in link and "link=fraction" in link

    stranger = page.context.browser.new_context()  # no cookies, no CSRF token, no login
    try:
        other = stranger.new_page()
        other.problems = []
        other.on("dialog", lambda d: (other.problems.append(d.message), d.dismiss()))
        other.on("pageerror", lambda e: other.problems.append(str(e)))
        response = other.goto(link)
        assert response.status == 200
        assert response.headers["referrer-policy"] == "no-referrer" and response.headers["cache-control"] == "no-store"
        other.wait_for_function("() => document.getElementById('difference').data !== undefined")
        shared = other.evaluate("() => window.CB.compare.data()")
        mine = page.evaluate("() => window.CB.compare.data()")
        assert [p["step"] for p in shared["panels"]] == [p["step"] for p in mine["panels"]] == [10, 20]
        assert (shared["layer"], shared["head"], shared["probe"], shared["link"]) == (1, 0, 1, "fraction")
        assert other.locator(".badge.readonly").count() == 1 and other.locator("button[data-share-kind]").count() == 0
        other.screenshot(path=str(SCREENS / "shared_compare.png"), full_page=True)
        prefix = link[link.index("/s/"):].split("/compare")[0]
        statuses = other.evaluate("""async ([prefix, a]) => {
            const post = (url, body) => fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                                     body: JSON.stringify(body || {})}).then(r => r.status);
            return [await post(prefix + "/api/runs/" + a + "/shares"), await post(prefix + "/api/runs/" + a + "/cancel"),
                    await post("/api/runs/" + a + "/shares"), await post("/api/runs/" + a + "/cancel"),
                    await fetch(prefix + "/runs/" + %d).then(r => r.status)];
        }""" % recorded["cell"], [prefix, a])
        assert statuses[:4] == [403, 403, 403, 403] and statuses[4] == 404
        assert other.problems == []
    finally:
        stranger.close()


def test_a_shared_run_opens_read_only_and_revoking_closes_it(live_url, recorded, page):
    a = recorded["a"]
    open_inert(page, f"{live_url}/runs/{a}/shares")
    page.fill("input[name=label]", SCRIPT)
    page.fill("input[name=state]", "step=10")
    page.click("form.controls button[type=submit]")
    page.wait_for_selector("#new-link-url")
    link = page.input_value("#new-link-url")
    assert link.endswith(f"/runs/{a}?step=10")
    assert page.locator("#links td", has_text=SCRIPT).count() == 1 and page.problems == []
    page.screenshot(path=str(SCREENS / "shares_made.png"), full_page=True)

    stranger = page.context.browser.new_context()
    try:
        other = stranger.new_page()
        other.problems = []
        other.on("dialog", lambda d: (other.problems.append(d.message), d.dismiss()))
        response = other.goto(link)
        assert response.status == 200 and other.locator(".badge.readonly").count() == 1
        other.wait_for_load_state("networkidle")
        assert other.locator("form[method=post]").count() == 0  # nothing to submit on a shared view
        other.screenshot(path=str(SCREENS / "shared_run.png"), full_page=True)
        page.goto(f"{live_url}/runs/{a}/shares")
        with page.expect_navigation():  # the revoke form posts, then redirects back to the list
            page.click("#links form button[type=submit]")
        page.wait_for_load_state("networkidle")
        assert page.locator("#links td", has_text="revoked").count() == 1
        assert other.goto(link).status == 404
        assert other.problems == []
    finally:
        stranger.close()


def test_the_run_page_share_button_links_the_view_as_it_is(live_url, recorded, page):
    a = recorded["a"]
    open_inert(page, f"{live_url}/runs/{a}?step=10")
    page.click("button[data-share-kind=run]")
    page.wait_for_function("() => document.querySelector('.share-result input').value.includes('/s/')")
    link = page.input_value(".share-result input")
    assert re.search(rf"/s/[A-Za-z0-9_-]{{43}}/runs/{a}\?step=10$", link), link
    page.screenshot(path=str(SCREENS / "run_share.png"))
    stranger = page.context.browser.new_context()
    try:
        other = stranger.new_page()
        assert other.goto(link).status == 200
        other.wait_for_load_state("networkidle")
        assert other.text_content("#step-label") == "10"  # the same step as the shared view
        assert other.locator("button[data-share-kind]").count() == 0
    finally:
        stranger.close()


def test_a_sweep_cell_opens_its_run(live_url, recorded, page):
    open_inert(page, f"{live_url}/sweeps/{recorded['sweep']}")
    page.wait_for_function("() => document.getElementById('grid-0').data !== undefined")
    box = page.locator("#grid-0 .nsewdrag").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)  # the first column: d_model 16
    page.wait_for_url(re.compile(rf"/runs/{recorded['cell']}$"))
    assert page.problems == []


def test_the_share_box_shows_the_whole_link_and_copies_it(live_url, recorded, page):
    a = recorded["a"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
    open_inert(page, f"{live_url}/runs/{a}")
    icon = page.evaluate("() => document.querySelector('link[rel=icon]').href")
    assert page.request.get(icon).status == 200  # every page names a favicon that exists
    page.click("button[data-share-kind=run]")
    page.wait_for_function("() => document.querySelector('.share-result input').value.includes('/s/')")
    link = page.input_value(".share-result input")
    assert page.evaluate("() => { const i = document.querySelector('.share-result input'); "
                         "return i.scrollWidth <= i.clientWidth; }"), "the link box cuts the URL"
    page.click("button.share-copy")
    page.wait_for_function("() => document.querySelector('button.share-copy').textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == link
    page.locator(".share-box").screenshot(path=str(SCREENS / "share_copy.png"))
    assert page.problems == []
