"""The guard: one pure-ASGI middleware that every HTTP request passes, installed by ``server.security``.

It applies, in this order:

1. **Body limit.** A body larger than ``settings.max_body_bytes`` gets 413, whether it announces its
   size (Content-Length) or streams it (it is read, bounded, before any route sees it).
2. **Login.** With ``settings.auth_token`` set (a lab deployment) every route but share links
   (/s/...), /static, /vendor, /healthz and /login needs it (``server.login``): API clients send
   ``Authorization: Bearer <token>``; browsers carry the login cookie. Pages redirect to /login,
   API calls get 401 JSON. Without a token (the loopback default) the dashboard is open, but only
   to requests addressed to a loopback name (Host ``localhost``, ``127.0.0.1``, ``[::1]``): a web
   page elsewhere cannot reach it by pointing one of its own names at 127.0.0.1 (DNS rebinding),
   and a server opened to the network without a token answers 403 until one is set.
3. **Share links change nothing.** Any POST/PUT/PATCH/DELETE under /s/ is 403.
4. **CSRF.** Every state change must carry the page's CSRF token, in the header ``X-CSRF-Token``
   (JS ``fetch``) or the form field ``csrf_token`` (HTML forms). The token is an HMAC, keyed with
   ``settings.secret_key`` (a random key per process when unset), of a random per-browser cookie;
   templates get it from the Jinja globals ``csrf_token()`` and ``csrf_input()``. API clients are
   exempt (a browser never sends ``Authorization`` cross-site): with a token set, those sending the
   valid ``Authorization: Bearer <token>``; on the open loopback dashboard, any bearer.
5. **No NUL in text.** A NUL character (``%00``, ``\u0000``) in the path, the query string, a form
   or a JSON body is 422 naming the field: PostgreSQL cannot store one in text, and no name,
   tag, note, key or filter needs one (the same answer on every database).
6. **Headers.** Every response says nosniff and sends a Content-Security-Policy allowing only this
   site's own scripts (inline data goes in ``<script type="application/json">``) and no framing;
   shared views add ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote

from fastapi import Request
from starlette.datastructures import Headers, MutableHeaders

from core.settings import Settings
from server.errors import field_error
from server.login import LOGIN_COOKIE, cookie, csrf_for, read_cookies, same, valid_bearer, valid_login_cookie

CSRF_COOKIE = "cb_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_PREFIXES = ("/s/", "/static/", "/vendor/")
PUBLIC_PATHS = frozenset({"/healthz", "/login", "/favicon.ico"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})  # tests give TestClient base_url="http://127.0.0.1"
SEED_SCOPE_KEY = "circuitboard.csrf_seed"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})  # FastAPI's pages load their own CDN assets
NUL_MESSAGE = "text may not contain a NUL character (\\u0000 or %00)"


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
        cookies = read_cookies(headers)
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
            if not given or not same(given, csrf_for(self.secret, seed)):
                await _json(send, 403, "missing or wrong CSRF token: reload the page and try again")
                return
        nul = nul_field(scope, headers, body)
        if nul is not None:
            await _send_json(send, 422, {"detail": [field_error(nul, NUL_MESSAGE)]})
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
                    out.append("Set-Cookie", cookie(CSRF_COOKIE, new_seed, max_age=None, https=https))
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


def nul_field(scope: dict, headers: Headers, body: bytes) -> tuple[str, ...] | None:
    """Where a NUL character hides in the request's text (``("query", "q")``, ``("body", "name")``), or None."""
    if "\x00" in scope["path"]:
        return ("path",)
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if "\x00" in key or "\x00" in value:
            return ("query", key.replace("\x00", ""))
    if not body:
        return None
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if "\x00" in key or "\x00" in value:
                return ("body", key.replace("\x00", ""))
        return None
    if b"\x00" in body:
        return ("body",)
    if kind.endswith("json") and b"\\u0000" in body:  # an escaped NUL: find it in the parsed document
        try:
            return _nul_in(json.loads(body), ("body",))
        except ValueError:  # not JSON after all: the route's own parser says so
            return None
    return None


def _nul_in(value: Any, loc: tuple[str, ...]) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return loc if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return loc
        found = _nul_in(item, (*loc, str(key)))
        if found is not None:
            return found
    return None


async def _json(send: Any, status: int, detail: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    await _send_json(send, status, {"detail": detail}, extra)


async def _send_json(send: Any, status: int, document: Any, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Any, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})

