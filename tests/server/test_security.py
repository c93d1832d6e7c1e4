"""server.security: open on loopback, login with a token, CSRF, body limits, headers, 422 for bad input."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from core.db import crud
from core.db.session import session_scope
from core.settings import Settings
from core.specs.errors import SpecError
from server.main import create_app

TOKEN = "lab-secret-token"


def make_client(url, **settings) -> TestClient:
    app = create_app(Settings(database_url=str(url), **settings))
    with session_scope(app.state.engine) as session:
        crud.create_run(session, spec={"problem": "parity", "steps": 20}, name="one")
    return TestClient(app, follow_redirects=False, base_url="http://127.0.0.1")


@pytest.fixture
def open_client(sqlite_url) -> TestClient:
    return make_client(sqlite_url)


@pytest.fixture
def locked_client(sqlite_url) -> TestClient:
    return make_client(sqlite_url, auth_token=TOKEN, max_body_bytes=4096)


def page_csrf(client: TestClient, path: str = "/runs/1/shares", **kwargs) -> str:
    """The CSRF token a page hands its forms (the hidden csrf_token field)."""
    response = client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return re.search(r'name="csrf_token" value="([^"]+)"', response.text).group(1)


def test_loopback_without_token_is_open(open_client):
    assert open_client.get("/openapi.json").status_code == 200
    assert open_client.get("/api/runs/1/shares").status_code == 200
    assert open_client.get("/runs/1/shares").status_code == 200


def test_without_a_token_only_loopback_names_are_served(open_client):
    for host in ("localhost:8000", "127.0.0.1", "127.0.0.2:80", "[::1]:8000"):
        assert open_client.get("/api/runs/1/shares", headers={"Host": host}).status_code == 200
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "192.168.1.5:8000", "", "testserver"):
        assert open_client.get("/runs/1/shares", headers={"Host": host}).status_code == 403
    assert open_client.get("/healthz", headers={"Host": "evil.example"}).status_code == 200


def test_with_a_token_any_host_may_log_in(locked_client):
    headers = {"Host": "lab.example.org", "Authorization": f"Bearer {TOKEN}"}
    assert locked_client.get("/api/runs/1/shares", headers=headers).status_code == 200


def test_with_a_token_api_calls_need_it(locked_client):
    response = locked_client.get("/api/runs/1/shares")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert locked_client.get("/api/runs/1/shares", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert locked_client.get("/api/runs/1/shares", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_with_a_token_pages_redirect_to_login_and_the_cookie_lets_in(locked_client):
    response = locked_client.get("/runs/1/shares?x=1")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fruns%2F1%2Fshares%3Fx%3D1"
    csrf = page_csrf(locked_client, "/login")
    wrong = locked_client.post("/login", data={"token": "nope", "next": "/runs/1/shares", "csrf_token": csrf})
    assert wrong.status_code == 303 and "error=1" in wrong.headers["location"]
    assert "cb_login" not in locked_client.cookies
    right = locked_client.post("/login", data={"token": TOKEN, "next": "/runs/1/shares", "csrf_token": csrf})
    assert right.status_code == 303 and right.headers["location"] == "/runs/1/shares"
    cookie = right.headers["set-cookie"]
    assert "cb_login=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert locked_client.get("/runs/1/shares").status_code == 200
    assert locked_client.get("/api/runs/1/shares").status_code == 200


def test_a_share_link_needs_no_login(locked_client):
    made = locked_client.post("/api/runs/1/shares", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    url = made.json()["url"]
    stranger = TestClient(locked_client.app, follow_redirects=False, base_url="http://127.0.0.1")
    assert stranger.get(url).status_code == 200
    assert stranger.get(url.split("/runs/")[0] + "/api/runs/1").status_code == 200
    assert stranger.get("/runs/1").status_code == 303  # the same run outside the link needs the login


def test_a_forged_login_cookie_is_refused(locked_client):
    locked_client.cookies.set("cb_login", "abc.0123")
    assert locked_client.get("/api/runs/1/shares").status_code == 401


def test_login_never_redirects_off_site(locked_client):
    csrf = page_csrf(locked_client, "/login")
    response = locked_client.post("/login", data={"token": TOKEN, "next": "//evil.example/x", "csrf_token": csrf})
    assert response.headers["location"] == "/"


def test_public_paths_need_no_login(locked_client):
    assert locked_client.get("/healthz").status_code == 200
    assert locked_client.get("/vendor/plotly.min.js").status_code == 200
    assert locked_client.get("/static/css/app.css").status_code == 200
    assert locked_client.get("/login").status_code == 200
    # a share link is judged by its token, not the login: an unknown one is 404, not 401 or a redirect
    assert locked_client.get("/s/unknown-token/compare?runs=1,2").status_code == 404


def test_csrf_rejects_a_form_post_without_the_token(open_client):
    assert open_client.post("/runs/1/shares", data={"label": "x"}).status_code == 403
    assert open_client.post("/runs/1/shares", data={"label": "x", "csrf_token": "f" * 64}).status_code == 403
    csrf = page_csrf(open_client)
    assert open_client.post("/runs/1/shares", data={"label": "x", "csrf_token": csrf}).status_code == 201


def test_odd_bytes_in_tokens_are_refused_not_crashed_on(open_client, locked_client):
    odd = "t\u00e9st\u00ff".encode("latin-1")
    assert open_client.post("/api/runs/1/shares", json={}, headers={"X-CSRF-Token": odd}).status_code == 403
    assert locked_client.get("/api/runs/1/shares", headers={"Authorization": b"Bearer " + odd}).status_code == 401
    assert locked_client.get("/api/runs/1/shares", headers={"Cookie": b"cb_login=n" + odd + b".x"}).status_code == 401


def test_csrf_for_fetch_is_a_header_and_bearer_clients_are_exempt(open_client):
    assert open_client.post("/api/runs/1/shares", json={}).status_code == 403
    csrf = page_csrf(open_client)
    assert open_client.post("/api/runs/1/shares", json={}, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert open_client.delete("/api/shares/1").status_code == 403
    other = TestClient(open_client.app, base_url="http://127.0.0.1")  # another browser: its own cookie, so this token is not its token
    assert other.post("/api/runs/1/shares", json={}, headers={"X-CSRF-Token": csrf}).status_code == 403
    assert other.post("/api/runs/1/shares", json={}, headers={"Authorization": "Bearer x"}).status_code == 201


def test_a_login_cookie_does_not_replace_the_csrf_token(locked_client):
    csrf = page_csrf(locked_client, "/login")
    locked_client.post("/login", data={"token": TOKEN, "csrf_token": csrf})
    assert locked_client.post("/api/runs/1/shares", json={}).status_code == 403
    # a wrong bearer beside the login cookie is not an API client: still no exemption from CSRF
    assert locked_client.post("/api/runs/1/shares", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert locked_client.post("/api/runs/1/shares", json={}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
    assert locked_client.post("/api/runs/1/shares", json={}, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_bodies_over_the_limit_are_413(locked_client):
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    big = b'{"label": "' + b"x" * 10_000 + b'"}'
    assert locked_client.post("/api/runs/1/shares", content=big, headers=auth).status_code == 413

    def streamed():  # no Content-Length: the body is counted as it arrives
        for _ in range(10):
            yield b"x" * 1000

    assert locked_client.post("/api/runs/1/shares", content=streamed(), headers=auth).status_code == 413
    assert locked_client.post("/api/runs/1/shares", json={"label": "ok"}, headers=auth).status_code == 201


def test_every_page_sends_the_security_headers(open_client):
    for path in ("/runs/1/shares", "/login", "/api/runs/1/shares"):
        headers = open_client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp.split("style-src")[0]


def test_shared_paths_send_no_referrer_and_no_store_and_change_nothing(open_client):
    response = open_client.get("/s/some-token/runs/1")
    assert response.headers["referrer-policy"] == "no-referrer" and response.headers["cache-control"] == "no-store"
    assert open_client.post("/s/some-token/api/runs/1/shares", json={}, headers={"Authorization": "Bearer x"}).status_code == 403
    assert open_client.delete("/s/some-token/api/shares/1").status_code == 403


def test_bad_input_is_422_with_field_messages(open_client):
    auth = {"Authorization": "Bearer x"}
    response = open_client.post("/api/runs/1/shares", json={"expires_in_hours": -1, "bogus": 1}, headers=auth)
    assert response.status_code == 422
    assert {error["field"] for error in response.json()["detail"]} == {"expires_in_hours", "bogus"}
    assert open_client.post("/api/runs/1/shares", content=b"{not json", headers={**auth, "Content-Type": "application/json"}).status_code == 422
    assert open_client.get("/api/runs/99999999999999999999/shares").status_code == 422


def test_a_spec_error_is_422_naming_the_field(open_client):
    @open_client.app.get("/test-spec-error")
    def raises():
        raise SpecError([("d_model", "must be <= 2048 (got 65536)")])

    response = open_client.get("/test-spec-error")
    assert response.status_code == 422
    assert response.json()["detail"] == [{"field": "d_model", "loc": ["d_model"], "msg": "must be <= 2048 (got 65536)",
                                          "type": "value_error"}]
