"""How fast the dashboard serves: a script that prints figures (not a test).

    python benchmarks/dashboard_speed.py [--runs 1000] [--snapshots 100] [--requests 1000] [--clients 50]

It builds a SQLite database in a temporary folder with one run the size of ``fast-polynomial``
(2 layers x 4 heads, probe set of 4 sequences for each length 1..16, every metric and head score
the recorder writes) holding 100 snapshots, plus 1,000 finished runs for the runs list; starts
``uvicorn --factory server.main:create_app`` on a free loopback port; and measures, against that
live server, with httpx:

1. the run page with 100 snapshots (target < 300 ms), sequentially;
2. one snapshot's heatmap data over the wire (``/api/runs/{id}/snapshots/{step}``: every layer and
   head of the longest probe sequence, L = 16, gzip as a browser asks; target < 64 KB);
3. the runs list with 1,000 runs (target < 200 ms);
4. p50/p95 latency of the run page and of the run's JSON at 50 concurrent clients (an asyncio
   httpx loop, bounded in requests and seconds; and wrk, bounded in seconds, when it is installed,
   e.g. ``apt-get install wrk``; target p95 < 100 ms), with /healthz as the framework's floor;
5. the overload target (reliability issue 16, item 8), with wrk: ``/healthz``, the finished run's
   page and its JSON, one after another in this one run, at 50 connections: the page and the JSON
   must each reach >= 50% of ``/healthz``'s requests/s, with p95 beside it and no 5xx (finished runs
   come from ``server.cache``); and a run still training stays live (its JSON shows a new step at
   once, with no ETag).

The load generator runs on the same machine as the server, so on a small shared machine it takes
CPU from the server: the concurrent figures are an upper bound. Nothing here leaves loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.db import crud  # noqa: E402
from core.db.models import Run, Status  # noqa: E402
from core.db.session import make_engine, session_scope, upgrade  # noqa: E402
from core.names import ROLES, SCORES, metric_key, score_key  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.problems import tokens as T  # noqa: E402
from core.snapshots import pack, real_width  # noqa: E402
from core.summary import summarize  # noqa: E402


# ------------------------------------------------------------------------------------- the data


def probe_set(max_len: int, per_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    width = real_width(max_len) + 1
    lengths = np.repeat(np.arange(1, max_len + 1), per_len)
    tokens = np.full((len(lengths), width), T.EOS, dtype=np.int64)
    for i, length in enumerate(lengths):
        tokens[i, 0] = T.POLYNOMIAL
        tokens[i, 1:length + 1] = rng.integers(0, 11, length)
        tokens[i, length + 1] = T.EOI
        tokens[i, length + 2:2 * length + 2] = rng.integers(0, 11, length)
    return tokens, lengths


def patterns(lengths: np.ndarray, width: int, n_layers: int, n_heads: int, rng: np.random.Generator) -> np.ndarray:
    """Random causal attention (rows sum to 1) of the snapshot's shape."""
    logits = rng.normal(size=(len(lengths), n_layers, n_heads, width, width)).astype(np.float32) * 3
    logits[..., np.triu_indices(width, 1)[0], np.triu_indices(width, 1)[1]] = -np.inf
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def metric_rows(steps: list[int], max_len: int, n_layers: int, n_heads: int, rng: np.random.Generator) -> list:
    rows = []
    for i, step in enumerate(steps):
        progress = (i + 1) / len(steps)
        for split in ("train", "test"):
            rows += [(metric_key(split, "seq_acc"), step, progress), (metric_key(split, "token_acc"), step, progress)]
            rows += [(metric_key(split, "seq_acc", n), step, progress) for n in range(1, max_len + 1)]
            rows += [(metric_key(split, "token_acc", n), step, progress) for n in range(1, max_len + 1)]
        rows += [("train/loss", step, 3 * (1 - progress) + 0.01), ("train/lr", step, 1e-3), ("test/gen_acc", step, progress)]
        for role in ROLES:
            for score in SCORES:
                for layer in range(n_layers):
                    for head in range(n_heads):
                        value = float(rng.random() * progress)
                        rows.append((score_key(role, score, layer, head), step, value))
                        rows += [(score_key(role, score, layer, head, n), step, value) for n in range(1, max_len + 1)]
    return rows


def build(db_url: str, *, n_runs: int, n_snapshots: int) -> int:
    """The benchmark database; returns the id of the run with ``n_snapshots`` snapshots."""
    rng = np.random.default_rng(0)
    upgrade(db_url)
    engine = make_engine(db_url)
    spec = get_preset("fast-polynomial")
    n_layers, n_heads, max_len = spec["n_layers"], spec["n_heads"], spec["max_len"]
    steps = [round(i * spec["steps"] / (n_snapshots - 1)) for i in range(n_snapshots)]
    tokens, lengths = probe_set(max_len, 4, rng)
    rows = metric_rows(steps, max_len, n_layers, n_heads, rng)
    summary = summarize(rows)
    with session_scope(engine) as session:
        run = crud.create_run(session, spec=spec, name="benchmark: 100 snapshots", preset="fast-polynomial",
                              status=Status.SUCCEEDED.value)
        run.summary, run.step = summary, spec["steps"]
        crud.put_probe_set(session, run_id=run.id, tokens=tokens, lengths=lengths)
        crud.upsert_metrics(session, run_id=run.id, rows=rows)
        for step in steps:
            blob, layout = pack(patterns(lengths, tokens.shape[1], n_layers, n_heads, rng), lengths)
            crud.put_snapshot(session, run_id=run.id, step=step, data=blob,
                              shape=[len(lengths), n_layers, n_heads, tokens.shape[1], tokens.shape[1]], layout=layout)
        run_id = run.id
        session.add_all(Run(spec=spec, name=f"run {i}", preset="fast-polynomial", status=Status.SUCCEEDED.value,
                            step=spec["steps"], total_steps=spec["steps"], summary=summary, tags=["bulk"])
                        for i in range(n_runs - 1))
    engine.dispose()
    return run_id


# ----------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, folder: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CIRCUITBOARD_DATABASE_URL": db_url, "CIRCUITBOARD_AUTH_TOKEN": "", "CIRCUITBOARD_BROKER_URL": "",
           "PYTHONPATH": str(ROOT)}
    log = open(folder / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "server.main:create_app", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
                                *(["--workers", str(workers)] if workers > 1 else [])],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("the server did not start:\n" + (folder / "server.log").read_text())


# ---------------------------------------------------------------------------------- measuring


def timed(client: httpx.Client, url: str, repeat: int) -> tuple[list[float], httpx.Response]:
    times, response = [], None
    client.get(url)  # warm: template compile, caches, SQLite pages
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return times, response


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def load(base: str, paths: list[str], *, clients: int, requests: int, seconds: float) -> dict:
    """``clients`` concurrent loops over ``paths`` until ``requests`` are done or ``seconds`` pass."""
    latencies: dict[str, list[float]] = {path: [] for path in paths}
    errors = 0
    issued = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        async def worker(index: int) -> None:
            nonlocal errors, issued
            while issued < requests and time.monotonic() < stop_at:
                path = paths[(issued + index) % len(paths)]
                issued += 1
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies[path].append((time.perf_counter() - started) * 1000)
                errors += not ok

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.monotonic() - started
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


WRK_REPORT = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) fivexx = 0 end
response = function(status, headers, body) if status >= 500 then fivexx = fivexx + 1 end end
done = function(summary, latency, requests)
  local server_errors = 0
  for _, thread in ipairs(threads) do server_errors = server_errors + thread:get("fivexx") end
  io.write(string.format("RESULT p50 %.2f p95 %.2f p99 %.2f requests %d errors %d seconds %.2f fivexx %d\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.duration / 1e6, server_errors))
end
"""


def wrk(base: str, path: str, *, clients: int, seconds: int, folder: Path, gzip: bool = False) -> dict | None:
    """p50/p95/p99 (ms) and throughput of ``path`` under wrk's ``clients`` connections, or None without wrk.

    ``gzip``: ask for gzip as a browser does (wrk asks for nothing by default)."""
    if shutil.which("wrk") is None:
        return None
    script = folder / "report.lua"
    script.write_text(WRK_REPORT)
    header = ["-H", "Accept-Encoding: gzip"] if gzip else []
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), *header,
                          base + path], capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT p50 ([\d.]+) p95 ([\d.]+) p99 ([\d.]+) requests (\d+) errors (\d+) seconds ([\d.]+)"
                      r" fivexx (\d+)", out)
    p50, p95, p99, requests, errors, elapsed, fivexx = match.groups()
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "rps": int(requests) / float(elapsed),
            "errors": int(errors), "5xx": int(fivexx)}


def settle(base: str, *, limit: float = 60) -> float:
    """Wait until the server answers /healthz within a second again (a burst leaves a backlog); seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
    return time.monotonic() - started


def overload_target(base: str, db_url: str, run_id: int, *, clients: int, seconds: int, folder: Path,
                    rounds: int = 3) -> None:
    """Item 8 of the reliability issue: a finished run's page and JSON at >= 50% of /healthz, no 5xx; live runs live.

    The paths take turns, ``rounds`` times ``seconds / rounds`` each, so a change in what else the
    shared machine is doing weighs on all of them alike; requests/s is over all rounds, p95 the
    median of the rounds' p95.
    """
    if shutil.which("wrk") is None:
        print("\noverload target: needs wrk (apt-get install wrk); skipped")
        return
    each = max(2, round(seconds / rounds))
    print(f"\noverload target, wrk, {clients} connections, {rounds} rounds of {each} s per path, taking turns "
          f"(finished runs from the render cache):")
    paths = (("/healthz", "/healthz", False), ("finished run's page", f"/runs/{run_id}", False),
             ("finished run's JSON", f"/api/runs/{run_id}", False), ("the page, gzip asked", f"/runs/{run_id}", True))
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in paths}
    for label, path, gzip in paths:  # warm: the first render of each is not what is measured
        httpx.get(base + path, headers={"Accept-Encoding": "gzip" if gzip else "identity"}, timeout=30)
    for _ in range(rounds):
        for label, path, gzip in paths:
            settle(base)
            runs[label].append(wrk(base, path, clients=clients, seconds=each, folder=folder, gzip=gzip))
    floor = sum(r["rps"] for r in runs["/healthz"]) / rounds
    for label, _, _ in paths:
        rps = sum(r["rps"] for r in runs[label]) / rounds
        p50, p95 = (statistics.median(r[q] for r in runs[label]) for q in ("p50", "p95"))
        fivexx = sum(r["5xx"] for r in runs[label])
        verdict = "" if label == "/healthz" else ("  OK" if rps >= 0.5 * floor and fivexx == 0 else "  BELOW TARGET")
        print(f"  {label:<22} {rps:7.0f} req/s ({100 * rps / floor:4.0f}% of /healthz)  p50 {p50:6.1f}  "
              f"p95 {p95:6.1f} ms  5xx {fivexx}{verdict}")
    engine = make_engine(db_url)
    try:
        with session_scope(engine) as session:  # a run still training: every answer is rendered afresh
            live = crud.create_run(session, spec=get_preset("fast-polynomial"), name="live", status=Status.RUNNING.value)
        steps, etags = [], []
        for step in (10, 20):
            with session_scope(engine) as session:
                crud.update_run(session, run_id=live.id, step=step)
            answer = httpx.get(f"{base}/api/runs/{live.id}", timeout=10)
            steps.append(answer.json()["progress"]["step"])
            etags.append(answer.headers.get("etag"))
    finally:
        engine.dispose()
    live_ok = steps == [10, 20] and etags == [None, None]
    print(f"  a run still training: its JSON showed steps {steps}, ETags {etags}{'  OK (live)' if live_ok else '  STALE'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000, help="requests in the concurrent phase")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60, help="time bound of the concurrent phase")
    parser.add_argument("--repeat", type=int, default=20, help="sequential requests per page")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="seconds per page under wrk, when installed")
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--overload-only", action="store_true", help="measure only the overload target (5.)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db_url = f"sqlite:///{folder / 'bench.db'}"
        started = time.monotonic()
        run_id = build(db_url, n_runs=args.runs, n_snapshots=args.snapshots)
        print(f"database: 1 run with {args.snapshots} snapshots + {args.runs - 1} runs, built in "
              f"{time.monotonic() - started:.1f} s ({(folder / 'bench.db').stat().st_size / 1e6:.1f} MB)")
        process, base = start_server(db_url, folder, args.server_workers)
        try:
            if args.overload_only:
                overload_target(base, db_url, run_id, clients=args.clients, seconds=args.wrk_seconds, folder=folder)
                return
            with httpx.Client(base_url=base, timeout=30, headers={"Accept-Encoding": "gzip"}) as client:
                steps = client.get(f"/api/runs/{run_id}/snapshots").json()
                step_list = steps.get("steps", steps) if isinstance(steps, dict) else steps
                step = step_list[len(step_list) // 2]
                longest = 4 * get_preset("fast-polynomial")["max_len"] - 1  # probe sets run short to long
                figures = []
                for label, path, target in (
                        (f"run page, {args.snapshots} snapshots", f"/runs/{run_id}", 300),
                        (f"runs list, {args.runs} runs", "/", 200),
                        ("run JSON", f"/api/runs/{run_id}", None),
                        ("one snapshot JSON, longest probe", f"/api/runs/{run_id}/snapshots/{step}?probe={longest}", None)):
                    times, response = timed(client, path, args.repeat)
                    figures.append((label, times, target, response))
                print(f"\nsequential, {args.repeat} requests each (ms):")
                for label, times, target, response in figures:
                    verdict = "" if target is None else ("  OK" if statistics.median(times) < target else "  OVER")
                    print(f"  {label:<34} median {statistics.median(times):7.1f}  p95 {pct(times, 95):7.1f}"
                          f"  (target {target or '-'} ms){verdict}")
                _, _, _, snapshot = figures[3]
                wire = snapshot.num_bytes_downloaded
                raw = len(snapshot.content)
                print(f"\none snapshot's heatmap data: {wire / 1024:.1f} KB over the wire "
                      f"({snapshot.headers.get('content-encoding', 'identity')}; {raw / 1024:.1f} KB decoded) "
                      f"(target < 64 KB){'  OK' if wire < 64 * 1024 else '  OVER'}")
            for paths, note in (([f"/runs/{run_id}", f"/api/runs/{run_id}"], "target p95 < 100 ms"),
                                (["/healthz"], "no database, no template: the framework's own floor")):
                result = asyncio.run(load(base, paths, clients=args.clients, requests=args.requests,
                                          seconds=args.seconds))
                total = sum(len(v) for v in result["latencies"].values())
                print(f"\n{args.clients} concurrent clients on loopback, {args.server_workers} server process(es), "
                      f"{total} requests in {result['elapsed']:.1f} s ({total / result['elapsed']:.0f} req/s, "
                      f"{result['errors']} errors):")
                for path, values in result["latencies"].items():
                    print(f"  {path:<34} p50 {pct(values, 50):7.1f}  p95 {pct(values, 95):7.1f}  "
                          f"p99 {pct(values, 99):7.1f} ms  ({note})")
            if shutil.which("wrk"):
                print(f"\nwrk, {args.clients} connections, {args.wrk_seconds} s per page, "
                      f"{args.server_workers} server process(es):")
                for path in ("/healthz", f"/api/runs/{run_id}", f"/runs/{run_id}"):
                    waited = settle(base)
                    r = wrk(base, path, clients=args.clients, seconds=args.wrk_seconds, folder=folder)
                    print(f"  {path:<34} p50 {r['p50']:7.1f}  p95 {r['p95']:7.1f}  p99 {r['p99']:7.1f} ms  "
                          f"{r['rps']:6.0f} req/s  {r['errors']} errors  (server idle after {waited:.1f} s)")
            overload_target(base, db_url, run_id, clients=args.clients, seconds=args.wrk_seconds, folder=folder)
            print(f"\nmachine: {os.cpu_count()} CPUs, shared with other work; client and server on the same machine")
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # still draining a burst's backlog
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
