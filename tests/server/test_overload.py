"""Overload, against a real server process: more concurrent clients than the database pool has
connections, clients that give up, and the server answers only 2xx or 503, then is back at once.

One ``uvicorn`` process on a SQLite file (the default deployment; the settings are the defaults:
64 requests in flight, a 2 s pool timeout, a 15-connection pool) serving a really trained run, a
run still training and the runs list. 120 clients hammer them for 4 s, each giving up after 0.5 s
(closing its connection, as a browser tab or a load balancer does). Then ``/healthz`` must answer
within 2 s of the load ending, and a page right after it. The server's log must hold no 500 and no
30 s wait for a pooled connection (a wait past the 2 s pool timeout is a 503, which is allowed).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
from sqlalchemy.engine import make_url

from core.db import jobs
from core.db.session import make_engine, session_scope, upgrade
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.browser.conftest import live_server
from tests.server.conftest import FAST, train_into

CLIENTS, SECONDS, GIVE_UP_S = 120, 4.0, 0.5


async def hammer(base: str, paths: list[str]) -> Counter:
    """``CLIENTS`` loops over ``paths`` for ``SECONDS``; each request is abandoned after ``GIVE_UP_S``."""
    seen: Counter = Counter()
    stop_at = time.monotonic() + SECONDS
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=GIVE_UP_S) as client:
        async def loop(index: int) -> None:
            turn = index
            while time.monotonic() < stop_at:
                turn += 1
                try:
                    seen[(await client.get(paths[turn % len(paths)])).status_code] += 1
                except httpx.TimeoutException:
                    seen["gave up"] += 1
                except httpx.TransportError:
                    seen["connection error"] += 1

        await asyncio.gather(*(loop(i) for i in range(CLIENTS)))
    return seen


def test_overload_sheds_with_503_never_500_and_recovers_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'circuitboard.db'}"
    upgrade(url)
    finished = train_into(make_url(url))
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            live = submit_run(session, spec=RunSpec.from_flat(FAST), name="live")
        with session_scope(engine) as session:  # a run still training: never cached, every request renders
            jobs.claim(session, job_id=live.job_id, worker_id="test", lease_seconds=600)
    finally:
        engine.dispose()
    server = live_server(url, tmp_path)
    base = next(server)
    try:
        paths = [f"/runs/{finished}", f"/api/runs/{finished}", f"/runs/{live.run_id}", f"/api/runs/{live.run_id}",
                 "/", f"/api/runs/{live.run_id}/metrics"]
        seen = asyncio.run(hammer(base, paths))
        ended = time.monotonic()
        health = httpx.get(base + "/healthz", timeout=10)
        recovered = time.monotonic() - ended
        page = httpx.get(base + f"/runs/{live.run_id}", timeout=10)
        after = time.monotonic() - ended
    finally:
        server.close()  # stops the server process
    statuses = {status for status in seen if isinstance(status, int)}
    print(f"answers under load: {dict(seen)}; /healthz {recovered:.2f} s after, a live page {after:.2f} s after")
    assert statuses <= {200, 503}, dict(seen)
    assert seen[503] > 0, f"the load never reached the limit, so shedding went untested: {dict(seen)}"
    assert seen[200] > 0, dict(seen)
    assert health.status_code == 200 and recovered < 2, f"/healthz took {recovered:.2f} s after the load"
    assert page.status_code == 200 and after < 4, f"a page took {after:.2f} s after the load"
    log = (tmp_path / "server.log").read_text()
    assert "timeout 30" not in log and "Traceback" not in log and " 500 " not in log, log[-3000:]  # a 2 s pool wait is a 503
