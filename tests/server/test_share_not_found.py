"""A run outside a share link, opened under it, is a page that says so (never raw JSON), linking inside the share."""

from __future__ import annotations

import re

from core.db import crud, shares
from core.db.session import make_engine, session_scope


def test_another_run_under_a_share_is_a_page_that_links_inside_it(app_client, served_url, trained_run):
    engine = make_engine(served_url)
    try:
        with session_scope(engine) as session:
            other = crud.create_run(session, spec={"problem": "parity"}, name="private").id
            _, token = shares.create(session, kind="run", target={"run_ids": [trained_run]})
    finally:
        engine.dispose()
    response = app_client.get(f"/s/{token}/runs/{other}")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert f'id="not-found">no run {other}</p>' in response.text and '{"detail"' not in response.text
    assert "This shared link opens only what it was made for: run" in response.text
    assert f'href="/s/{token}/runs/{trained_run}">#{trained_run}</a>' in response.text
    assert not re.search(rf'href="/runs/{trained_run}"', response.text)  # no owner link leaks into the share
    assert "private" not in response.text
    api = app_client.get(f"/s/{token}/api/runs/{other}")
    assert api.status_code == 404 and api.json() == {"detail": f"no run {other}"}  # the API stays JSON
