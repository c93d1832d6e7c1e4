"""FastAPI dependencies: settings, database sessions and templates, all taken from ``app.state``.

    def route(session: Session = Depends(read_session)): ...

``create_app(settings)`` puts the settings, the engine and the Jinja2 environment on ``app.state``;
nothing here reads the process environment, so tests inject their own settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from core.db.session import session_scope
from core.settings import Settings


MAX_ID = 2**31 - 1  # ids are SQL integers; a larger number names nothing (and must not reach the driver)
PathId = Annotated[int, Path(ge=1, le=MAX_ID, description="a row id")]  # every id in a route's path (pages and API)
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="run id")]
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="sweep id")]


def settings(request: Request) -> Settings:
    return request.app.state.settings


async def read_session(request: Request) -> AsyncIterator[Session]:
    """A read-only session for one request, opened and closed on the event loop.

    An async generator on purpose: a sync one is closed in the thread pool, so under load every
    pool thread can wait for a database connection while the connections wait for a thread to
    close their sessions (a deadlock until the pool times out). A Session connects lazily, in the
    route's own thread; closing it only returns the connection to the pool.
    """
    with session_scope(request.app.state.engine, readonly=True) as session:
        yield session


def write_session(request: Request) -> Iterator[Session]:
    """A session whose work commits when the route returns (and rolls back if it raises); for writes only.

    Routes take it as ``WriteSession`` (``Depends(write_session, scope="function")``): with the
    default scope FastAPI runs the code after ``yield`` (the COMMIT) only once the response has gone
    out, so a browser following a 303 could read the page before the write it just made (and a
    failed commit would follow a success response).

    Sync on purpose, unlike ``read_session``: its exit runs the COMMIT, which on SQLite may wait for
    the write lock (busy timeout) and on any database does network I/O, so it must run in the thread
    pool, never block the event loop. The pool-exhaustion risk ``read_session`` avoids is bounded here
    because only the owner's few write routes use it; GET routes take ``read_session``.
    """
    with session_scope(request.app.state.engine) as session:
        yield session


WriteSession = Annotated[Session, Depends(write_session, scope="function")]  # committed before the response


def templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates
