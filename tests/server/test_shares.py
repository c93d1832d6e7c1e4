"""Share links: made by the owner, opened by anyone holding the token, read-only and scoped to what they name."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.db import crud
from core.db.models import Run, Share, utcnow
from core.db.session import make_engine, session_scope
from core.specs.sweep import SweepSpec
from core.sweeps import create_sweep
from tests.server.conftest import form_token


@pytest.fixture(scope="module")
def engine(served_url):
    engine = make_engine(served_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def other_run(engine) -> int:
    """A run that no link in these tests names."""
    with session_scope(engine) as session:
        return crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="other").id


@pytest.fixture
def anonymous(app) -> TestClient:
    """A fresh browser: no cookies, no login."""
    return TestClient(app, follow_redirects=False, base_url="http://127.0.0.1")


def share(client, csrf, run_id, **body):
    response = client.post(f"/api/runs/{run_id}/shares", json=body, headers=csrf)
    assert response.status_code == 201, response.text
    return response.json()


def token_of(url: str) -> str:
    return url.split("/")[2]


def test_a_run_link_opens_the_same_view_with_its_state(app_client, csrf, anonymous, trained_run):
    link = share(app_client, csrf, trained_run, label="for Ana", state="?step=10&layer=1&head=0")
    assert link["url"].startswith("/s/") and link["url"].endswith(f"/runs/{trained_run}?step=10&layer=1&head=0")
    page = anonymous.get(link["url"])
    assert page.status_code == 200, page.text
    assert "read-only shared view" in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    api = anonymous.get(f"/s/{token_of(link['url'])}/api/runs/{trained_run}")
    assert api.status_code == 200 and api.json()["id"] == trained_run


def test_the_token_is_long_and_only_its_hash_is_stored(app_client, csrf, engine, trained_run):
    response = app_client.post(f"/api/runs/{trained_run}/shares", json={"label": "hash check"}, headers=csrf)
    assert response.headers["cache-control"] == "no-store"  # the one response that holds the token
    link = response.json()
    token = token_of(link["url"])
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    with session_scope(engine, readonly=True) as session:
        row = session.get(Share, link["id"])
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        stored = [str(getattr(row, column.name)) for column in Share.__table__.columns]
        assert not any(token in value for value in stored)
    listing = app_client.get(f"/api/runs/{trained_run}/shares")
    assert listing.status_code == 200 and token not in listing.text
    assert any(row["id"] == link["id"] and row["label"] == "hash check" and row["live"] for row in listing.json())


def test_a_link_reaches_nothing_it_was_not_given(app_client, csrf, anonymous, trained_run, other_run):
    prefix = "/s/" + token_of(share(app_client, csrf, trained_run)["url"])
    assert anonymous.get(f"{prefix}/runs/{other_run}").status_code == 404
    assert anonymous.get(f"{prefix}/api/runs/{other_run}").status_code == 404
    assert anonymous.get(f"{prefix}/api/compare?runs={trained_run},{other_run}").status_code == 404
    assert anonymous.get(f"{prefix}/compare?runs={trained_run},{other_run}").status_code == 404
    assert anonymous.get(f"{prefix}/runs/{trained_run}/shares").status_code == 404  # the owner's page is not shared
    assert anonymous.get(f"{prefix}/api/runs/{trained_run}/shares").status_code == 404


def test_a_link_changes_nothing(app_client, csrf, anonymous, trained_run):
    link = share(app_client, csrf, trained_run)
    prefix = "/s/" + token_of(link["url"])
    primed = anonymous.get(link["url"])  # even with the shared page's own CSRF token in hand
    headers = {"X-CSRF-Token": primed.text.split('name="csrf-token" content="')[1].split('"')[0]}
    assert anonymous.post(f"{prefix}/api/runs/{trained_run}/cancel", headers=headers).status_code == 403
    assert anonymous.post(f"{prefix}/api/runs", json={"preset": "fast-parity"}, headers=headers).status_code == 403
    assert anonymous.post(f"{prefix}/api/runs/{trained_run}/shares", json={}, headers=headers).status_code == 403
    assert anonymous.delete(f"{prefix}/api/shares/{link['id']}", headers=headers).status_code == 403
    # and outside /s/ the token is worth nothing: an anonymous browser has no valid CSRF pair for the owner's routes
    assert anonymous.delete(f"/api/shares/{link['id']}").status_code == 403
    assert anonymous.get(link["url"]).status_code == 200


def test_a_revoked_link_is_404(app_client, csrf, anonymous, trained_run):
    link = share(app_client, csrf, trained_run)
    assert anonymous.get(link["url"]).status_code == 200
    revoked = app_client.delete(f"/api/shares/{link['id']}", headers=csrf)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None and not revoked.json()["live"]
    assert anonymous.get(link["url"]).status_code == 404
    assert app_client.delete("/api/shares/2147483647", headers=csrf).status_code == 404


def test_an_expired_link_is_404(app_client, csrf, anonymous, engine, trained_run):
    link = share(app_client, csrf, trained_run, expires_in_hours=1)
    assert anonymous.get(link["url"]).status_code == 200
    with session_scope(engine) as session:
        session.get(Share, link["id"]).expires_at = utcnow() - timedelta(seconds=1)
    assert anonymous.get(link["url"]).status_code == 404
    assert app_client.post(f"/api/runs/{trained_run}/shares", json={"expires_in_hours": 0}, headers=csrf).status_code == 422


def test_a_compare_link_opens_those_runs_only(app_client, csrf, anonymous, trained_run, other_run, engine):
    with session_scope(engine) as session:
        third = crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="third").id
    response = app_client.post("/api/shares", json={"kind": "compare", "run_ids": [trained_run, other_run],
                                                    "state": "runs=99&step=10&link=fraction"}, headers=csrf)
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    assert url.endswith(f"/compare?runs={trained_run}%2C{other_run}&step=10&link=fraction")
    page = anonymous.get(url)
    assert page.status_code == 200 and 'id="compare-data"' in page.text
    prefix = "/s/" + token_of(url)
    assert anonymous.get(f"{prefix}/api/compare?runs={trained_run},{third}").status_code == 404
    assert anonymous.get(f"{prefix}/runs/{other_run}").status_code == 200
    assert anonymous.get(f"{prefix}/runs/{third}").status_code == 404
    bad = app_client.post("/api/shares", json={"kind": "compare", "run_ids": [trained_run]}, headers=csrf)
    assert bad.status_code == 422


def test_a_sweep_link_opens_the_sweep_and_its_runs(app_client, csrf, anonymous, engine, other_run):
    spec = SweepSpec.parse({"preset": "fast-parity", "axes": {"d_model": [16, 32]}})
    with session_scope(engine) as session:
        sweep_id = create_sweep(session, spec=spec, name="widths").sweep_id
        other_sweep = create_sweep(session, spec=spec, name="not shared").sweep_id
        cell_run = crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="cell", sweep_id=sweep_id)
        session.flush()
        session.get(Run, cell_run.id).sweep_cell = {"d_model": 16}
        cell_id = cell_run.id
    response = app_client.post("/api/shares", json={"kind": "sweep", "sweep_id": sweep_id}, headers=csrf)
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    prefix = "/s/" + token_of(url)
    assert url.endswith(f"/sweeps/{sweep_id}") and anonymous.get(url).status_code == 200
    assert anonymous.get(f"{prefix}/api/sweeps/{sweep_id}").json()["cells"][0]["run"]["url"] == f"{prefix}/runs/{cell_id}"
    assert anonymous.get(f"{prefix}/runs/{cell_id}").status_code == 200
    assert anonymous.get(f"{prefix}/runs/{other_run}").status_code == 404
    assert anonymous.get(f"{prefix}/sweeps/{other_sweep}").status_code == 404
    assert app_client.post("/api/shares", json={"kind": "sweep", "sweep_id": 2147483647}, headers=csrf).status_code == 404


def test_the_links_page_makes_and_revokes_with_forms(app_client, anonymous, trained_run, engine):
    page = app_client.get(f"/runs/{trained_run}/shares")
    assert page.status_code == 200
    made = app_client.post(f"/runs/{trained_run}/shares",
                           data={"label": "form <b>link</b>", "state": "step=10", **form_token(page.text)})
    assert made.status_code == 201 and "form &lt;b&gt;link&lt;/b&gt;" in made.text
    url = made.text.split('id="new-link-url"')[0].rsplit('value="', 1)[1].split('"')[0]
    path = url[url.index("/s/"):]
    assert anonymous.get(path).status_code == 200
    with session_scope(engine, readonly=True) as session:
        share_id = max(session.scalars(select(Share.id)))
    revoked = app_client.post(f"/shares/{share_id}/revoke", data={"back": f"/runs/{trained_run}/shares",
                                                                 **form_token(page.text)}, follow_redirects=False)
    assert revoked.status_code == 303 and revoked.headers["location"] == f"/runs/{trained_run}/shares"
    assert anonymous.get(path).status_code == 404
    assert app_client.post(f"/runs/{trained_run}/shares", data={"expires_in_hours": "soon", **form_token(page.text)}).status_code == 422


def test_a_run_link_names_no_parent_child_or_sweep_it_was_not_given(app_client, csrf, anonymous, engine):
    spec = SweepSpec.parse({"preset": "fast-parity", "axes": {"d_model": [16, 32]}})
    with session_scope(engine) as session:
        sweep_id = create_sweep(session, spec=spec, name="secret-sweep-name").sweep_id
        parent = crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="secret-parent-name").id
        child = crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="shared-child",
                                parent_run_id=parent, parent_step=10, sweep_id=sweep_id).id
        crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="secret-grandchild-name",
                        parent_run_id=child, parent_step=5)
    owner = app_client.get(f"/api/runs/{child}").json()["lineage"]
    assert owner["parent"]["name"] == "secret-parent-name" and owner["sweep_name"] == "secret-sweep-name"
    assert [c["name"] for c in owner["children"]] == ["secret-grandchild-name"]
    prefix = "/s/" + token_of(share(app_client, csrf, child)["url"])
    api = anonymous.get(f"{prefix}/api/runs/{child}")
    assert api.status_code == 200
    lineage = api.json()["lineage"]
    assert lineage["parent"] is None and lineage["parent_hidden"] and lineage["children"] == []
    assert lineage["sweep_id"] is None and lineage["sweep_name"] is None and lineage["sweep_cell"] is None
    page = anonymous.get(f"{prefix}/runs/{child}")
    assert page.status_code == 200 and "fine-tuned from a run not shared" in page.text
    for text in (api.text, page.text):
        assert "secret-parent-name" not in text and "secret-grandchild-name" not in text
        assert "secret-sweep-name" not in text and f"/runs/{parent}" not in text


def test_no_get_route_opens_a_write_session(app):
    """GETs read through ``read_session`` (opened and closed on the event loop); ``write_session`` is for writes."""
    from fastapi.routing import APIRoute

    from server.deps import write_session

    def calls(dependant):
        for dep in dependant.dependencies:
            yield dep.call
            yield from calls(dep)

    gets = [route for route in app.routes if isinstance(route, APIRoute) and "GET" in route.methods]
    assert gets and not [route.path for route in gets if write_session in calls(route.dependant)]


def test_a_runs_links_are_exactly_those_that_open_it(engine):
    from core.db import shares

    spec = SweepSpec.parse({"preset": "fast-parity", "axes": {"d_model": [16, 32]}})
    with session_scope(engine) as session:
        sweep_id = create_sweep(session, spec=spec, name="listing").sweep_id
        other_sweep = create_sweep(session, spec=spec, name="listing, other").sweep_id
        run = crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="listed", sweep_id=sweep_id).id
        other = crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="not listed").id
        made = {
            "run": shares.create(session, kind="run", target={"run_ids": [run]})[0].id,
            "compare": shares.create(session, kind="compare", target={"run_ids": [other, run]})[0].id,
            "sweep": shares.create(session, kind="sweep", target={"sweep_id": sweep_id})[0].id,
        }
        # links that hold the run's digits, or another sweep, but do not open it
        shares.create(session, kind="run", target={"run_ids": [run * 10 + 1]})
        shares.create(session, kind="compare", target={"run_ids": [other, int(f"1{run}")]})
        shares.create(session, kind="sweep", target={"sweep_id": other_sweep})
    with session_scope(engine, readonly=True) as session:
        listed = [share.id for share in shares.list_for_run(session, run_id=run)]
        assert listed == sorted(made.values(), reverse=True)
        assert all(run in shares.readable_run_ids(session, session.get(Share, i)) for i in listed)
        of_other = [share.id for share in shares.list_for_run(session, run_id=other)]
        assert made["compare"] in of_other and made["run"] not in of_other and made["sweep"] not in of_other


def test_a_write_is_committed_before_its_response_starts(app, app_client, csrf, engine, trained_run):
    """A browser follows a 303 as soon as it arrives: the page it loads must already see the write."""
    link = share(app_client, csrf, trained_run)
    page = app_client.get(f"/runs/{trained_run}/shares")
    seen = []

    async def watching(scope, receive, send):
        async def send_and_look(message):
            if message["type"] == "http.response.start" and scope["path"].endswith("/revoke"):
                with session_scope(engine, readonly=True) as session:
                    seen.append(session.get(Share, link["id"]).revoked_at)
            await send(message)

        await app(scope, receive, send_and_look)

    client = TestClient(watching, base_url="http://127.0.0.1", cookies=app_client.cookies, follow_redirects=False)
    revoked = client.post(f"/shares/{link['id']}/revoke", data={"back": "/", **form_token(page.text)})
    assert revoked.status_code == 303
    assert len(seen) == 1 and seen[0] is not None  # committed before the first byte of the response
