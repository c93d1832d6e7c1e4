"""How failures become answers, in one place: ``install(app)`` maps each kind of exception to its response.

    raise NotFound(f"no run {run_id}")     # anywhere under a route: 404, never a try/except per route

- ``NotFound`` -> 404. Under ``/api`` (and a share link's ``/s/<token>/api``) the JSON
  ``{"detail": "no run 7"}``; a page gets the HTML not-found page with the same sentence.
- Bad input -> 422 ``{"detail": [{"field", "loc", "msg", "type"}, ...]}``, one entry per problem, the
  same shape for a request FastAPI rejects (``RequestValidationError``) and a spec ``core.specs``
  rejects (``SpecError``).
- A busy or unreachable database (SQLAlchemy ``OperationalError``, such as SQLite's "database is
  locked" after the busy timeout or a refused PostgreSQL connection, and the pool's ``TimeoutError``)
  -> 503 with one sentence and ``Retry-After``: the request may simply be sent again, nothing was
  half-done (a write's transaction rolled back). Never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.specs.errors import SpecError
from core.submit import KeyReused

RETRY_AFTER_S = 5
BUSY = "the database is busy or unreachable; nothing was changed, try again in a few seconds"
NOT_FOUND_PAGE = "partials/run_missing.html"
log = logging.getLogger(__name__)


class NotFound(LookupError):
    """What a request names does not exist (or this share link may not see it); the message says which."""


def wants_json(request: Request) -> bool:
    """JSON for the API (``/api/...``, ``/s/<token>/api/...``) and the schema; HTML for pages."""
    path = request.url.path
    if path.startswith("/s/"):
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    return path.startswith("/api/") or path == "/openapi.json"


async def not_found(request: Request, exc: NotFound) -> Response:
    message = str(exc) or "not found"
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=404)
    context: dict[str, Any] = {"message": message}
    access = getattr(request.state, "access", None)  # set by server.access.get_access, when it got that far
    if access is not None:
        context["access"] = access
    return request.app.state.templates.TemplateResponse(request, NOT_FOUND_PAGE, context, status_code=404)


async def database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("503 for %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0][:300])
    headers = {"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"}
    if wants_json(request):
        return JSONResponse({"detail": BUSY}, status_code=503, headers=headers)
    return PlainTextResponse(BUSY[:1].upper() + BUSY[1:] + ".", status_code=503, headers=headers)


def field_name(loc: Any) -> str:
    """``("body", "overrides", "lr")`` -> ``"overrides.lr"``; ``("query", "q")`` -> ``"q"``."""
    parts = [str(part) for part in loc if part not in ("body", "query", "path")] if loc else []
    return ".".join(parts) or "request"


def field_error(loc: Any, msg: str, type_: str = "value_error") -> dict[str, Any]:
    """One entry of a 422's ``detail`` list."""
    return {"field": field_name(loc), "loc": [str(p) for p in loc or ()], "msg": msg, "type": type_}


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [field_error(error.get("loc"), str(error.get("msg", "invalid")), str(error.get("type", "value_error")))
              for error in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def spec_error(_request: Request, exc: SpecError) -> JSONResponse:
    """The same shape as ``validation_error``: ``{"detail": [{"field", "loc", "msg", "type"}]}``."""
    return JSONResponse({"detail": [{"field": field, "loc": field.split("."), "msg": message, "type": "value_error"}
                                    for field, message in exc.errors]}, status_code=422)


async def key_reused(request: Request, exc: KeyReused) -> Response:
    """409: the submit key already made a run from another request; the message says which."""
    if wants_json(request):
        return JSONResponse({"detail": str(exc)}, status_code=409)
    return PlainTextResponse(str(exc)[:1].upper() + str(exc)[1:] + ".", status_code=409)


def install(app: FastAPI) -> None:
    app.add_exception_handler(KeyReused, key_reused)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(SpecError, spec_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(PoolTimeout, database_unavailable)
