"""Load shedding: past ``limit`` requests in flight, a new one gets ``503`` at once, never a wait.

    app.add_middleware(Shed, limit=settings.max_inflight_requests)     # outermost: before anything else runs

Under overload (a share link posted to a lab channel, more readers than the database pool has
connections) a server that queues every request falls behind: requests wait for a pooled connection,
their clients give up, and the server goes on working through the abandoned ones long after the
burst (10 s of a stalled ``/healthz`` was measured). Shedding keeps the work in hand bounded: at most
``limit`` requests are served at once, each waiting at most ``settings.db_pool_timeout_seconds`` for
a connection (then 503 from ``server.errors``), so the server is back within a second or two of the
load ending. A shed request costs almost nothing: ``503`` with ``Retry-After: 1`` and
``Cache-Control: no-store``, JSON ``{"detail": ...}`` under ``/api`` and plain text elsewhere;
nothing was read or changed, so it may simply be sent again.

``/healthz`` is never shed (it touches no database, and a load balancer must be able to ask), and
the count is per server process (one event loop: no lock needed).
"""

from __future__ import annotations

import json
from typing import Any

EXEMPT = frozenset({"/healthz"})
RETRY_AFTER_S = 1
BUSY = "the server is busy; nothing was read or changed, try again in a moment"


class Shed:
    """The pure-ASGI middleware: counts HTTP requests in flight and answers 503 past ``limit``."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.inflight = 0
        self.shed = 0  # how many were answered 503 (for tests and benchmarks to read)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self.shed += 1
            await _busy(scope, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


async def _busy(scope: dict, send: Any) -> None:
    path = scope["path"]
    api = path.startswith("/api/") or (path.startswith("/s/") and "/api/" in path)
    body = json.dumps({"detail": BUSY}).encode() if api else (BUSY[:1].upper() + BUSY[1:] + ".").encode()
    headers = [(b"content-type", b"application/json" if api else b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode()), (b"retry-after", str(RETRY_AFTER_S).encode()),
               (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
