"""Login, CSRF, body limits and response headers: what guards every route, installed by ``install``.

One ASGI middleware (``Guard``) applies, in this order, to every HTTP request:

1. **Body limit.** A body larger than ``settings.max_body_bytes`` gets 413, whether it announces its
   size (Content-Length) or streams it (it is read, bounded, before any route sees it).
2. **Login.** With ``settings.auth_token`` set (a lab deployment) every route but share links
   (/s/...), /static, /vendor, /healthz and /login needs it: API clients send
   ``Authorization: Bearer <token>``; browsers log in once at /login and carry a signed, HttpOnly,
   SameSite=Lax cookie. Pages redirect to /login, API calls get 401 JSON. Without a token (the
   loopback default) the dashboard is open, but only to requests addressed to a loopback name
   (Host ``localhost``, ``127.0.0.1``, ``[::1]``): a web page elsewhere cannot reach it by pointing
   one of its own names at 127.0.0.1 (DNS rebinding), and a server opened to the network without a
   token answers 403 until one is set.
3. **Share links change nothing.** Any POST/PUT/PATCH/DELETE under /s/ is 403.
4. **CSRF.** Every state change must carry the page's CSRF token, in the header ``X-CSRF-Token``
   (JS ``fetch``) or the form field ``csrf_token`` (HTML forms). The token is an HMAC, keyed with
   ``settings.secret_key`` (a random key per process when unset), of a random per-browser cookie;
   templates get it from the Jinja globals ``csrf_token()`` and ``csrf_input()``. API clients are
   exempt (a browser never sends ``Authorization`` cross-site): with a token set, those sending the
   valid ``Authorization: Bearer <token>``; on the open loopback dashboard, any bearer.
5. **Headers.** Every response says nosniff and sends a Content-Security-Policy allowing only this
   site's own scripts (inline data goes in ``<script type="application/json">``) and no framing;
   shared views add ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.

Bad input is 422 JSON naming each field, never a 500 (``RequestValidationError``, ``SpecError``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from jinja2 import pass_context
from markupsafe import Markup, escape
from starlette.datastructures import Headers, MutableHeaders

from core.settings import Settings
from core.specs.errors import SpecError

CSRF_COOKIE = "cb_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LOGIN_COOKIE = "cb_login"
LOGIN_MAX_AGE = 30 * 24 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_PREFIXES = ("/s/", "/static/", "/vendor/")
PUBLIC_PATHS = frozenset({"/healthz", "/login", "/favicon.ico"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})  # tests give TestClient base_url="http://127.0.0.1"
SEED_SCOPE_KEY = "circuitboard.csrf_seed"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})  # FastAPI's pages load their own CDN assets


# ------------------------------------------------------------------------------------------ tokens


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
    return bool(nonce) and _same(mac, _sign(secret, "login:" + auth_token, nonce))


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes any non-ASCII input (compare_digest on str would raise)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def valid_bearer(auth_token: str, header: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and _same(given.strip(), auth_token)


def safe_next(target: str | None) -> str:
    """Only a path on this site (``/x``, never ``//evil`` or ``/\\evil``) may follow a login."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


# -------------------------------------------------------------------------------------- middleware


class BodyTooLarge(Exception):
    pass


class Guard:
    """The pure-ASGI middleware that applies the module's rules, in order, to every HTTP request."""

    def __init__(self, app: Any, *, settings: Settings, secret: bytes) -> None:
        self.app = app
        self.settings = settings
        self.secret = secret

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = Headers(scope=scope)
        cookies = _cookies(headers)
        shared = path.startswith("/s/")
        new_seed = None
        seed = cookies.get(CSRF_COOKIE, "")
        if len(seed) < 16 or len(seed) > 64:
            seed = new_seed = secrets.token_urlsafe(24)
        scope[SEED_SCOPE_KEY] = seed
        send = self._decorate(send, path=path, shared=shared, new_seed=new_seed, https=scope.get("scheme") == "https")

        if _declared_too_large(headers, self.settings.max_body_bytes):
            await _json(send, 413, f"request body larger than {self.settings.max_body_bytes} bytes")
            return
        bearer = self._bearer_client(headers)
        if not self.settings.auth_token and path != "/healthz" and not _loopback(headers.get("host", "")):
            await _json(send, 403, "this dashboard has no login (CIRCUITBOARD_AUTH_TOKEN is unset), so it answers "
                                   "only to localhost; set a token to serve it to other hosts")
            return
        if self.settings.auth_token and not _public(path) and not self._logged_in(headers, cookies):
            if method in ("GET", "HEAD") and not path.startswith("/api/") and path != "/openapi.json":
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + ("?" + query if query else "")
                await _redirect(send, "/login?next=" + quote(target, safe=""))
            else:
                await _json(send, 401, "log in, or send Authorization: Bearer <token>",
                            extra=[(b"www-authenticate", b"Bearer")])
            return
        if method in UNSAFE_METHODS and shared:
            await _json(send, 403, "a share link is read-only")
            return
        if _has_body(headers):
            try:
                body = await _read_body(receive, self.settings.max_body_bytes)
            except BodyTooLarge:
                await _json(send, 413, f"request body larger than {self.settings.max_body_bytes} bytes")
                return
            receive = _replay(body, receive)
        else:
            body = b""
        if method in UNSAFE_METHODS and not bearer:
            given = headers.get(CSRF_HEADER) or await _form_token(scope, headers, body)
            if not given or not _same(given, csrf_for(self.secret, seed)):
                await _json(send, 403, "missing or wrong CSRF token: reload the page and try again")
                return
        await self.app(scope, receive, send)

    def _bearer_client(self, headers: Headers) -> bool:
        """An API client, exempt from CSRF: a valid bearer token, or any bearer when there is no token
        (the open loopback dashboard). A logged-in browser sending a wrong bearer is not exempt."""
        header = headers.get("authorization", "")
        if self.settings.auth_token:
            return valid_bearer(self.settings.auth_token, header)
        return header.lower().startswith("bearer ")

    def _logged_in(self, headers: Headers, cookies: dict[str, str]) -> bool:
        token = self.settings.auth_token or ""
        if valid_bearer(token, headers.get("authorization", "")):
            return True
        return valid_login_cookie(self.secret, token, cookies.get(LOGIN_COOKIE, ""))

    def _decorate(self, send: Any, *, path: str, shared: bool, new_seed: str | None, https: bool) -> Any:
        async def decorated(message: dict) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["X-Content-Type-Options"] = "nosniff"
                out["X-Frame-Options"] = "DENY"
                if path not in DOCS_PATHS:
                    out["Content-Security-Policy"] = CSP
                if shared:
                    out["Referrer-Policy"] = "no-referrer"
                    out["Cache-Control"] = "no-store"
                else:
                    out.setdefault("Referrer-Policy", "same-origin")
                if new_seed is not None:
                    out.append("Set-Cookie", _cookie(CSRF_COOKIE, new_seed, max_age=None, https=https))
            await send(message)

        return decorated


def _loopback(host: str) -> bool:
    """Is the Host header (``name[:port]``, ``[v6]:port``) a loopback name?"""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":")[0]
    if name in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback  # 127.0.0.2 yes; 127.evil.example is a name, no
    except ValueError:
        return False


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed Cookie header is no cookie
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


def _cookie(name: str, value: str, *, max_age: int | None, https: bool) -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if https:
        parts.append("Secure")
    return "; ".join(parts)


def _declared_too_large(headers: Headers, limit: int) -> bool:
    length = headers.get("content-length")
    if length is None:
        return False
    return not length.strip().isdigit() or int(length) > limit


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length", "0").strip()
    return length not in ("", "0") or "chunked" in headers.get("transfer-encoding", "").lower()


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _form_token(scope: dict, headers: Headers, body: bytes) -> str:
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(CSRF_FIELD, [""])
        return values[0]
    if kind == "multipart/form-data":
        try:
            form = await Request(scope, _replay(body, _never)).form()
        except Exception:  # noqa: BLE001 - an unreadable form carries no token
            return ""
        value = form.get(CSRF_FIELD)
        await form.close()
        return value if isinstance(value, str) else ""
    return ""


async def _never() -> dict:
    return {"type": "http.disconnect"}


async def _json(send: Any, status: int, detail: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Any, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


# --------------------------------------------------------------------------------------- the login


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
    if not _same(token, settings.auth_token):
        return RedirectResponse(f"/login?error=1&next={quote(safe_next(next), safe='')}", status_code=303)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.headers.append("Set-Cookie", _cookie(LOGIN_COOKIE, login_cookie(request.app.state.secret_key,
                                                                               settings.auth_token),
                                                  max_age=LOGIN_MAX_AGE, https=request.url.scheme == "https"))
    return response


@login.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


# -------------------------------------------------------------------------------------- bad input


def _field(loc: Any) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path")] if loc else []
    return ".".join(parts) or "request"


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": _field(error.get("loc")), "loc": [str(p) for p in error.get("loc", ())],
               "msg": str(error.get("msg", "invalid")), "type": str(error.get("type", "value_error"))}
              for error in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def spec_error(_request: Request, exc: SpecError) -> JSONResponse:
    """The same shape as ``validation_error``: ``{"detail": [{"field", "loc", "msg", "type"}]}``."""
    return JSONResponse({"detail": [{"field": field, "loc": field.split("."), "msg": message, "type": "value_error"}
                                    for field, message in exc.errors]}, status_code=422)


# ------------------------------------------------------------------------------------------ install


def install(app: FastAPI, settings: Settings) -> None:
    """Guard every route, add /login and /logout, and give templates ``csrf_token()``/``csrf_input()``."""
    secret = settings.secret_key.encode() if settings.secret_key else secrets.token_bytes(32)
    app.state.secret_key = secret
    app.include_router(login)
    app.add_middleware(Guard, settings=settings, secret=secret)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(SpecError, spec_error)

    def csrf_token(context: Any) -> str:
        request = context.get("request")
        seed = request.scope.get(SEED_SCOPE_KEY) if request is not None else None
        return csrf_for(secret, seed) if seed else ""

    def csrf_input(context: Any) -> Markup:
        return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf_token(context))}">')

    env = app.state.templates.env
    env.globals["csrf_token"] = pass_context(csrf_token)
    env.globals["csrf_input"] = pass_context(csrf_input)
