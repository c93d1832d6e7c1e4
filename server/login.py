"""The login: its tokens and cookies, and the /login and /logout routes.

With ``settings.auth_token`` set (a lab deployment), API clients send ``Authorization: Bearer
<token>`` and browsers log in once at /login, which sets a signed, HttpOnly, SameSite=Lax cookie
(``login_cookie``: a nonce and its HMAC keyed with the secret and the token, so changing the token
logs everyone out). The CSRF token of a browser (``csrf_for``) is an HMAC of its random seed cookie,
keyed with the same secret. ``server.guard`` checks both on every request; this module makes them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import Headers

from core.settings import Settings

LOGIN_COOKIE = "cb_login"
LOGIN_MAX_AGE = 30 * 24 * 3600


def _sign(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def csrf_for(secret: bytes, seed: str) -> str:
    """The CSRF token a browser holding cookie ``seed`` must send back."""
    return _sign(secret, "csrf", seed)


def login_cookie(secret: bytes, auth_token: str) -> str:
    """A fresh login cookie value: a nonce and its HMAC (changing the auth token logs everyone out)."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_sign(secret, 'login:' + auth_token, nonce)}"


def valid_login_cookie(secret: bytes, auth_token: str, value: str) -> bool:
    nonce, _, mac = value.partition(".")
    return bool(nonce) and same(mac, _sign(secret, "login:" + auth_token, nonce))


def same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes any non-ASCII input (compare_digest on str would raise)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def valid_bearer(auth_token: str, header: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and same(given.strip(), auth_token)


def safe_next(target: str | None) -> str:
    """Only a path on this site (``/x``, never ``//evil`` or ``/\\evil``) may follow a login."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def cookie(name: str, value: str, *, max_age: int | None, https: bool) -> str:
    """A Set-Cookie value: site-wide, HttpOnly, SameSite=Lax, Secure over https."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if https:
        parts.append("Secure")
    return "; ".join(parts)


def read_cookies(headers: Headers) -> dict[str, str]:
    """The request's cookies by name; a malformed Cookie header is no cookie at all."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed Cookie header is no cookie
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


# --------------------------------------------------------------------------------------- the routes

login = APIRouter(include_in_schema=False)


@login.get("/login")
def login_page(request: Request, next: str = "/", error: str = "") -> Response:  # noqa: A002 - the query's name
    return request.app.state.templates.TemplateResponse(
        request, "login.html", {"next": safe_next(next), "error": error,
                                "open": not request.app.state.settings.auth_token})


@login.post("/login")
def login_submit(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:  # noqa: A002
    settings: Settings = request.app.state.settings
    if not settings.auth_token:
        return RedirectResponse(safe_next(next), status_code=303)
    if not same(token, settings.auth_token):
        return RedirectResponse(f"/login?error=1&next={quote(safe_next(next), safe='')}", status_code=303)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.headers.append("Set-Cookie", cookie(LOGIN_COOKIE, login_cookie(request.app.state.secret_key,
                                                                               settings.auth_token),
                                                  max_age=LOGIN_MAX_AGE, https=request.url.scheme == "https"))
    return response


@login.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response

