"""A share link's reader who opens another run gets a page (never raw JSON) that links back inside the share.

Screenshot: /tmp/screens/share_not_found.png.
"""

from __future__ import annotations

import pytest

from core.db import crud, shares
from core.db.session import make_engine, session_scope
from tests.browser.conftest import SCREENS

pytestmark = pytest.mark.browser


def test_another_run_under_a_share_is_a_page(live_url, db_file_url, page):
    engine = make_engine(db_file_url)
    try:
        with session_scope(engine) as session:
            shared = crud.create_run(session, spec={"problem": "parity"}, name="shared").id
            other = crud.create_run(session, spec={"problem": "parity"}, name="private").id
            _, token = shares.create(session, kind="run", target={"run_ids": [shared]})
    finally:
        engine.dispose()
    response = page.goto(f"{live_url}/s/{token}/runs/{other}")
    assert response.status == 404 and response.headers["content-type"].startswith("text/html")
    assert page.text_content("#not-found") == f"no run {other}"
    assert page.is_visible(".badge.readonly")  # still the shared view's frame
    page.screenshot(path=str(SCREENS / "share_not_found.png"))
    page.click(f"a[href='/s/{token}/runs/{shared}']")
    page.wait_for_selector(".run-name")
    assert page.text_content(".run-name") == "shared"
    page.problems[:] = [p for p in page.problems if "404" not in p]  # the browser logs the 404 itself
    assert page.problems == []
