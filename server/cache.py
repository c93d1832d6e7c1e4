"""Finished runs, served from memory: a page or JSON a finished run can no longer change is rendered once.

    @read.get("/runs/{run_id}")
    def get_run(request: Request, run_id: RunId, access: CurrentAccess, session: ReadSession) -> Response:
        access.require_run(run_id)
        return cache.finished(request, session, run_id=run_id, render=lambda: json_response(...))

A share link posted to a lab channel brings a burst of readers to one finished run; re-rendering
the same page for each of them (the figures, the attention viewer, every query) is what took the
server down. :func:`finished` answers instead from a process-local LRU of rendered bodies, bounded in
bytes (``settings.page_cache_mb``; 0 turns it off), and sends an ``ETag``, so a browser that already
has the page gets ``304 Not Modified`` with no body.

**The key** is the request's path and query (a share link's ``/s/<token>/...`` prefix included, so
a shared view never answers for the owner's or another link's) and the run's *change stamp*
(:func:`change_stamp`): a digest of everything the run's pages and JSON show that can still change
once it has finished, read in one SQL statement of index lookups:

- the run row: status, step, total steps, name, notes, tags, error, start and end, parent, and the
  summary (``circuitboard import-eval --run`` adds metrics to a finished run and rewrites its
  summary with them);
- its jobs (count and newest ``updated_at``: a retry, a train job's progress, an intervention job);
- its intervention results, snapshots and checkpoints (count and newest);
- the runs it links to: its parent's name and jobs, its children (count, newest, their jobs), its
  sweep's name.

**Checking the stamp.** Reading the stamp is one database round trip, and under a burst that read
is nearly all a cached answer costs, so a finished run's stamp is trusted for
``settings.page_cache_check_seconds`` (0.5 s; 0: read for every request) before it is read again:
a burst of readers of one run costs a couple of reads a second, and a change made elsewhere (a
note, an intervention result, a retry from the command line) shows within that time. A cancel or
retry through this server forgets the run's stamp at once (:func:`forget`), so its page goes live
without waiting. A run that was live when last read is read again on every request.

Metric rows are not counted directly (that read costs more than the render it saves on a large run:
29 ms for 116,000 rows on SQLite): they change only while the run trains, when it is not cached, or
through import-eval, which rewrites the summary. A run that is not finished (QUEUED or RUNNING) is
never cached and gets no ETag: it stays live.

**CSRF.** A page carries its reader's CSRF token (``server.guard``), so the stored body is split
where the token was, and each answer puts the reader's own token back; the ETag covers the token
too. Each part is also kept compressed (``server.gzip_parts``), so a reader that accepts gzip gets
one gzip stream spliced around its token without compressing the page again, and ``GZipMiddleware``
passes it unchanged.

**A burst on a cold cache.** The first readers of a page that is not in memory yet would all render
it at once (each holding a database connection, so the pool runs dry and they get 503s). Instead one
renders and the others wait for its entry (:meth:`RenderCache.rendering`), and a request answered
from memory gives its connection back as soon as the stamp is read.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Text, bindparam, cast, func, select
from sqlalchemy.orm import Session, aliased

from core.db.jobs import TERMINAL
from core.db.models import Checkpoint, InterventionResult, Job, Run, Snapshot, Sweep
from server.guard import SEED_SCOPE_KEY
from server.gzip_parts import GzipParts
from server.login import csrf_for

KEPT_HEADERS = ("content-type", "content-disposition")


@dataclass(frozen=True)
class Entry:
    parts: GzipParts  # the body split where the reader's CSRF token goes, each part compressed once
    gzipped: bytes | None  # the whole gzip answer, for a body without a token (the same for everyone)
    headers: tuple[tuple[str, str], ...]

    @property
    def size(self) -> int:
        return sum(map(len, self.parts.parts)) + self.parts.size + len(self.gzipped or b"")

    def body(self, token: str) -> bytes:
        return token.encode().join(self.parts.parts)

    def gzip(self, token: str) -> bytes:
        return self.gzipped if self.gzipped is not None else self.parts.join(token.encode())


class RenderCache:
    """A thread-safe LRU of rendered bodies, bounded in bytes (routes run in the thread pool)."""

    def __init__(self, max_bytes: int, check_seconds: float = 0.0) -> None:
        self.max_bytes = max_bytes
        self.check_seconds = check_seconds  # how long a finished run's stamp is trusted before it is read again
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()
        self._stamps: dict[int, tuple[float, str]] = {}  # run id -> (read at, stamp), finished runs only
        self._rendering: dict[tuple, tuple[threading.Lock, int]] = {}  # key -> (its render lock, threads using it)
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.stamp_reads = 0

    def stamp(self, run_id: int, read: Callable[[], str | None]) -> str | None:
        """The run's stamp: remembered for ``check_seconds`` once finished, else ``read()`` now."""
        now = time.monotonic()
        known = self._stamps.get(run_id)
        if known is not None and now - known[0] < self.check_seconds:
            return known[1]
        self.stamp_reads += 1
        stamp = read()
        with self._lock:
            if stamp is None:
                self._stamps.pop(run_id, None)
            else:
                if len(self._stamps) > 10_000:  # a bound, never reached by a burst on a few runs
                    self._stamps.clear()
                self._stamps[run_id] = (now, stamp)
        return stamp

    @contextmanager
    def rendering(self, key: tuple) -> Iterator[None]:
        """Hold the key's render lock: concurrent misses of one key render it once, not once each."""
        with self._lock:
            lock, users = self._rendering.get(key, (threading.Lock(), 0))
            self._rendering[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._rendering[key]
                if users == 1:
                    del self._rendering[key]
                else:
                    self._rendering[key] = (lock, users - 1)

    def forget(self, run_id: int) -> None:
        with self._lock:
            self._stamps.pop(run_id, None)

    def get(self, key: tuple) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: tuple, entry: Entry) -> None:
        if entry.size > self.max_bytes:
            return  # larger than the whole cache: served, never kept
        with self._lock:
            old = self._entries.pop(key, None)
            self._bytes -= old.size if old else 0
            self._entries[key] = entry
            self._bytes += entry.size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size


def install(app, max_mb: int, check_seconds: float) -> None:
    """Give the app its cache (``app.state.render_cache``; None when ``max_mb`` is 0)."""
    app.state.render_cache = RenderCache(max_mb * 1_000_000, check_seconds) if max_mb > 0 else None


def forget(request: Request, run_id: int) -> None:
    """Read run ``run_id``'s stamp afresh on its next request (after this server changed the run)."""
    cache: RenderCache | None = getattr(request.app.state, "render_cache", None)
    if cache is not None:
        cache.forget(run_id)


def change_stamp(session: Session, *, run_id: int) -> str | None:
    """A digest of what the run's pages can still show differently, or None when the run is not finished
    (or does not exist: the render then answers 404 as usual)."""
    row = session.execute(_stamp_query(), {"run_id": run_id}).first()
    if row is None or row.status not in TERMINAL:
        return None
    return hashlib.sha256(repr(tuple(row)).encode()).hexdigest()[:32]


@functools.cache
def _stamp_query():
    """The one statement behind ``change_stamp``, built once (building it costs more than running it)."""
    parent, child, sibling_job = aliased(Run), aliased(Run), aliased(Job)
    children = select(child.id).where(child.parent_run_id == Run.id)

    def newest(column, *where):
        return select(func.max(column)).where(*where).scalar_subquery()

    def count(model, *where):
        return select(func.count()).select_from(model).where(*where).scalar_subquery()

    return select(
        Run.status, Run.step, Run.total_steps, Run.name, Run.notes, cast(Run.tags, Text), Run.error,
        cast(Run.summary, Text),  # as stored: hashed as text, never parsed
        Run.started_at, Run.finished_at, Run.parent_run_id, Run.parent_step,
        count(Job, Job.run_id == Run.id), newest(Job.updated_at, Job.run_id == Run.id),
        count(InterventionResult, InterventionResult.run_id == Run.id),
        newest(InterventionResult.id, InterventionResult.run_id == Run.id),
        count(Snapshot, Snapshot.run_id == Run.id), newest(Snapshot.step, Snapshot.run_id == Run.id),
        count(Checkpoint, Checkpoint.run_id == Run.id), newest(Checkpoint.id, Checkpoint.run_id == Run.id),
        select(parent.name).where(parent.id == Run.parent_run_id).scalar_subquery(),
        newest(sibling_job.updated_at, sibling_job.run_id == Run.parent_run_id),
        count(child, child.parent_run_id == Run.id), newest(child.id, child.parent_run_id == Run.id),
        select(func.max(Job.updated_at)).where(Job.run_id.in_(children)).scalar_subquery(),
        select(Sweep.name).where(Sweep.id == Run.sweep_id).scalar_subquery(),
    ).where(Run.id == bindparam("run_id"))


def finished(request: Request, session: Session, *, run_id: int, render: Callable[[], Response]) -> Response:
    """``render()``'s answer for run ``run_id``, from the cache while the run is finished and unchanged."""
    cache: RenderCache | None = getattr(request.app.state, "render_cache", None)
    stamp = cache.stamp(run_id, lambda: change_stamp(session, run_id=run_id)) if cache is not None else None
    if stamp is None:
        return render()  # live (or the cache is off): rendered every time, no ETag
    session.rollback()  # end the stamp's read: a request answered from memory holds no pooled connection
    token = _csrf_token(request)
    etag = '"' + hashlib.sha256(f"{stamp}|{request.url.path}?{request.url.query}|{token}".encode()).hexdigest()[:32] + '"'
    validators = {"ETag": etag, "Cache-Control": "private, no-cache"}  # the browser revalidates every time
    if etag in _if_none_match(request):
        return Response(status_code=304, headers=validators)
    key = (request.url.path, request.url.query, stamp)
    entry = cache.get(key)
    if entry is None:
        with cache.rendering(key):  # a burst's first readers: one renders, the others wait for its entry
            entry = cache.get(key)
            if entry is None:
                response = render()
                if response.status_code != 200 or not isinstance(response.body, bytes):
                    return response
                entry = _entry(response, token)
                cache.put(key, entry)
    return _answer(request, entry, token, validators)


def _entry(response: Response, token: str) -> Entry:
    parts = response.body.split(token.encode()) if token else [response.body]
    headers = tuple((name, value) for name, value in response.headers.items() if name in KEPT_HEADERS)
    compressed = GzipParts(parts)
    return Entry(parts=compressed, gzipped=compressed.join() if len(parts) == 1 else None, headers=headers)


def _answer(request: Request, entry: Entry, token: str, validators: dict[str, str]) -> Response:
    headers = {**dict(entry.headers), **validators, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"  # GZipMiddleware passes an encoded body unchanged
        return Response(entry.gzip(token), headers=headers)
    return Response(entry.body(token), headers=headers)


def _csrf_token(request: Request) -> str:
    seed = request.scope.get(SEED_SCOPE_KEY)
    secret = getattr(request.app.state, "secret_key", None)
    return csrf_for(secret, seed) if seed and secret else ""


def _if_none_match(request: Request) -> set[str]:
    given = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in given.split(",") if tag.strip()}
