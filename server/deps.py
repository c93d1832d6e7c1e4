"""FastAPI dependencies and the types of route parameters, as aliases a route signature names:

    def route(run_id: RunId, session: ReadSession, access: CurrentAccess): ...
    def change(run_id: RunId, session: WriteSession, access: OwnerAccess): ...

``create_app(settings)`` puts the settings, the engine and the Jinja2 environment on ``app.state``;
nothing here reads the process environment, so tests inject their own settings.

**Ids.** Every id a request names (path, query or JSON body; ``RunId``, ``PathId``, ``QueryId``,
``BodyId``, and a path's ``StepPath``) is checked by ``ascii_id``: ASCII digits only, at most
``MAX_ID`` (a SQL integer). ``+1``, ``1.0``, `` 1``, ``١`` (an Arabic-Indic one) and
5,000 digits are all 422, never parsed into 1 and never a 500 (Python's int() accepts the first four
and refuses the last with a ValueError). Page routes whose path must not shadow a fixed one
(``/runs/new`` beside ``/runs/{run_id}``) write ``{run_id:digits}``: the ``digits`` path convertor
matches ASCII digits and hands the text to the same validator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator, Field
from sqlalchemy.orm import Session
from starlette.convertors import Convertor, register_url_convertor

from core.db.session import session_scope
from core.names import SCORE_PATTERN
from core.settings import Settings
from core.specs.run import MAX_STEPS
from server.access import Access, get_access, owner_access

MAX_ID = 2**31 - 1  # ids are SQL integers; a larger number names nothing (and must not reach the driver)
MAX_ID_DIGITS = len(str(MAX_ID))


def ascii_id(value: Any) -> Any:
    """A whole number from a path, a query or JSON (an id, a step): an int as it is; a string only if
    it is ASCII digits alone, at most ``MAX_ID_DIGITS`` of them (the field's own bounds judge the rest)."""
    if isinstance(value, bool):
        raise ValueError("a whole number, not true or false")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("write it in the digits 0-9 alone (no sign, space, point or other digits)")
        if len(value) > MAX_ID_DIGITS:
            raise ValueError(f"at most {MAX_ID_DIGITS} digits (ids go up to {MAX_ID})")
        return int(value)
    raise ValueError("a whole number")


_IdCheck = BeforeValidator(ascii_id)
PathId = Annotated[int, _IdCheck, Path(ge=1, le=MAX_ID, description="a row id")]  # every id in a route's path
RunId = Annotated[int, _IdCheck, Path(ge=1, le=MAX_ID, description="run id")]
SweepId = Annotated[int, _IdCheck, Path(ge=1, le=MAX_ID, description="sweep id")]
ShareId = Annotated[int, _IdCheck, Path(ge=1, le=MAX_ID, description="share link id")]
QueryId = Annotated[int | None, _IdCheck, Query(ge=1, le=MAX_ID)]  # an optional id in the query string
BodyId = Annotated[int, _IdCheck, Field(ge=1, le=MAX_ID)]  # an id in a JSON body
StepPath = Annotated[int, _IdCheck, Path(ge=0, le=MAX_STEPS, description="training step")]
StepQuery = Annotated[int | None, _IdCheck, Query(ge=0, le=MAX_STEPS, description="training step")]  # ?step=
ScoreQuery = Annotated[str, Query(pattern=SCORE_PATTERN, description="a circuit score: peaky_thres, peaky_abs, ...")]


class DigitsConvertor(Convertor):
    """``{run_id:digits}``: ASCII digits, handed on as text so the route's id type judges their size."""

    regex = "[0-9]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: Any) -> str:
        return str(value)


register_url_convertor("digits", DigitsConvertor())


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


ReadSession = Annotated[Session, Depends(read_session)]
WriteSession = Annotated[Session, Depends(write_session, scope="function")]  # committed before the response
CurrentAccess = Annotated[Access, Depends(get_access)]  # the owner, or a share link (read-only)
OwnerAccess = Annotated[Access, Depends(owner_access)]  # the owner; a share link gets 403


def templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates
