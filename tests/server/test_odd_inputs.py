"""Every route answers 4xx to odd input, never 5xx (issue 16 item 3), on SQLite and PostgreSQL.

Table-driven over ``app.routes``: each path parameter of each route (share-link copies included)
gets each odd value below while the others hold real ones; each query parameter a NUL; JSON text
fields a NUL. An id is ASCII digits alone: ``+1``, ``1.0``, `` 1`` and ``١`` (Arabic-Indic one) name
no run, and 5,000 digits (past Python's int-string limit) are refused before int() ever sees them.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

ODD = {  # name -> as it goes in the URL (percent-encoded where a browser would encode it)
    "5,000 digits": "9" * 5000,
    "plus one": "+1",
    "one point zero": "1.0",
    "space one": "%201",
    "Arabic-Indic one": "%D9%A1",
    "NUL": "%00",
    "one NUL": "1%00",
}
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def real_value(name: str, trained_run: int, token: str) -> str:
    return token if name == "token" else "0" if name == "step" else str(trained_run)


def api_routes(app) -> list:
    """Every route the app serves (path, methods, dependant), share-link copies included. FastAPI may
    keep an included router as one entry that expands into its routes (``effective_route_contexts``)."""
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "effective_route_contexts"):
            found += list(route.effective_route_contexts())
    return found


def routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every route, one pair per method."""
    return [(method, route.path) for route in api_routes(app) for method in sorted(route.methods) if method != "HEAD"]


def send(client, method: str, url: str, csrf: dict):
    return client.request(method, url, headers=csrf, **({"json": {}} if method in ("POST", "PUT", "PATCH") else {}))


@pytest.fixture(scope="module")
def token(app_client, trained_run) -> str:
    page = app_client.get("/")
    from tests.server.conftest import page_csrf

    made = app_client.post(f"/api/runs/{trained_run}/shares", json={"label": "odd inputs"},
                           headers={"X-CSRF-Token": page_csrf(page.text)})
    assert made.status_code == 201, made.text
    return made.json()["url"].split("/")[2]


def test_the_table_covers_every_kind_of_route(app):
    paths = {path for _, path in routes(app)}
    assert {"/runs/{run_id:digits}", "/api/runs/{run_id}", "/api/runs/{run_id}/snapshots/{step}", "/sweeps/{sweep_id}",
            "/api/shares/{share_id}", "/s/{token}/api/runs/{run_id}", "/compare"} <= paths
    assert sum(bool(PARAM.search(path)) for path in paths) >= 20


def test_every_path_parameter_refuses_odd_input_with_4xx(app, app_client, csrf, trained_run, token):
    failures, checked = [], 0
    for method, template in routes(app):
        names = PARAM.findall(template)
        for odd_name in names:
            for label, odd in ODD.items():
                url = PARAM.sub(lambda m: odd if m[1] == odd_name else real_value(m[1], trained_run, token), template)
                response = send(app_client, method, url, csrf)
                checked += 1
                if not 400 <= response.status_code < 500:
                    failures.append(f"{method} {template} with {odd_name}={label}: {response.status_code} {response.text[:120]}")
    assert checked >= 20 * len(ODD)
    assert not failures, "\n".join(failures)


def test_an_odd_id_is_refused_not_read_as_one(app_client, trained_run):
    assert app_client.get(f"/api/runs/{trained_run}").status_code == 200
    for odd in ("+", "%20", "-"):
        assert app_client.get(f"/api/runs/{odd}{trained_run}").status_code == 422, odd
    for odd in (".0", "%20", "%00"):
        assert app_client.get(f"/api/runs/{trained_run}{odd}").status_code == 422, odd
    arabic = "".join(chr(0x660 + int(d)) for d in str(trained_run))  # the same number in Arabic-Indic digits
    for path in ("/api/runs/{}", "/runs/{}", "/api/runs/{}/metrics", "/api/runs/{}/shares"):
        assert app_client.get(path.format(arabic)).status_code in (404, 422), path
    assert app_client.get(f"/api/compare?runs={arabic},{trained_run}").status_code == 422
    assert app_client.get(f"/api/compare?runs=+{trained_run},{trained_run}").status_code == 422
    assert app_client.get("/runs/new", params={"copy": "9" * 5000}).status_code == 422
    assert app_client.get("/runs/new", params={"init_run": f"+{trained_run}"}).status_code == 422


def test_every_query_parameter_refuses_a_nul_with_422(app, app_client, trained_run, token):
    failures = []
    for route in api_routes(app):
        if "GET" not in route.methods:
            continue
        url = PARAM.sub(lambda m: real_value(m[1], trained_run, token), route.path)
        for param in route.dependant.query_params:
            response = app_client.get(url, params={param.alias: "a\x00b"})
            if response.status_code != 422:
                failures.append(f"GET {route.path}?{param.alias}=a%00b: {response.status_code} {response.text[:120]}")
    assert not failures, "\n".join(failures)
    for url in ("/?q=%00", "/?problem=%00", "/api/runs?q=%00", "/api/runs?problem=%00", "/api/runs?tag=x%00"):
        response = app_client.get(url)
        assert response.status_code == 422 and "NUL" in response.json()["detail"][0]["msg"], url


@pytest.mark.parametrize("url, body, field", [
    ("/api/runs", {"preset": "fast-parity", "name": "a\u0000b"}, "name"),
    ("/api/runs", {"preset": "fast-parity", "idempotency_key": "k\u0000"}, "idempotency_key"),
    ("/api/runs", {"preset": "fast-parity", "tags": ["ok", "t\u0000"]}, "tags.1"),
    ("/api/runs", {"preset": "fast-parity", "overrides": {"trainable": "all\u0000"}}, "overrides.trainable"),
    ("/api/estimate", {"preset": "fast-parity", "notes": "\u0000"}, "notes"),
    ("/api/sweeps", {"preset": "fast-parity", "name": "\u0000"}, "name"),
    ("/api/shares", {"kind": "run", "run_ids": [1], "label": "x\u0000"}, "label"),
])
def test_a_nul_in_json_text_is_422_naming_the_field(app_client, csrf, unique_tag, url, body, field):
    before = app_client.get("/api/runs", params={"limit": 1}).json()["total"]
    response = app_client.post(url, json=body, headers=csrf)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == field
    assert app_client.get("/api/runs", params={"limit": 1}).json()["total"] == before  # nothing was queued


def test_a_nul_in_a_form_is_422(app_client, trained_run):
    from tests.server.conftest import form_token

    page = app_client.get("/runs/new")
    response = app_client.post("/runs/new", data={**form_token(page.text), "name": "a\x00b"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "name"


def test_ids_in_json_bodies_are_ascii_digits_too(app_client, csrf, trained_run):
    for bad in ("+1", " 1", "1.0", "\u0661", True, 1.5):
        response = app_client.post("/api/shares", json={"kind": "run", "run_ids": [bad]}, headers=csrf)
        assert response.status_code == 422, (bad, response.text)
    assert app_client.post("/api/shares", json={"kind": "run", "run_ids": [trained_run]}, headers=csrf).status_code == 201
