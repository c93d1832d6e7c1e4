"""Take the README's screenshots of every page, from a database holding real runs.

    python docs/screenshots/take.py DB_URL --run 1 --compare 1,2       # runs, new run, run, compare, shares
    python docs/screenshots/take.py DB_URL --seed-set 1 --sets 1,3 --only seed_set,population_compare
    python docs/screenshots/take.py DB_URL --sweep 1 --sweep-step 500 --only sweep,sweep_slider

Starts ``circuitboard serve --no-worker`` on a free loopback port over that database, opens each
page in Debian's Chromium (/usr/bin/chromium) with Playwright, and writes PNGs beside this file:
runs, new run, run (attention viewer at the run's last snapshot), compare, a run's share links and
the shared (read-only) view of the run, a sweep (and its grid at ``--sweep-step``), a seed set and
seed sets compared. A page is taken when its option is given; ``--only`` keeps the named ones, so
pages from different databases can be retaken one database at a time.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("--run", type=int)
    parser.add_argument("--compare", help="run ids, e.g. 2,3")
    parser.add_argument("--sweep", type=int)
    parser.add_argument("--sweep-step", type=int, help="with --sweep: the grid at this step (sweep_slider.png)")
    parser.add_argument("--seed-set", type=int)
    parser.add_argument("--sets", help="seed sets to compare, e.g. 2,3,4")
    parser.add_argument("--only", help="comma-separated page names to take (default: every page given)")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CIRCUITBOARD_BROKER_URL": "", "CIRCUITBOARD_AUTH_TOKEN": ""}
    server = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--db", args.db, "--port", str(port),
                               "--no-worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        pages = {"runs": "/", "new_run": "/runs/new?preset=fast-polynomial"}
        if args.run:
            share = httpx.post(f"{base}/api/runs/{args.run}/shares", headers={"Authorization": "Bearer cli"},
                               json={"label": "screenshot"}).json()["url"]
            pages.update({"run": f"/runs/{args.run}", "shares": f"/runs/{args.run}/shares", "shared_run": share})
        if args.compare:
            pages["compare"] = f"/compare?runs={args.compare}&layer=1"
        if args.sweep:
            pages["sweep"] = f"/sweeps/{args.sweep}"
            if args.sweep_step is not None:
                pages["sweep_slider"] = f"/sweeps/{args.sweep}?step={args.sweep_step}"
        if args.seed_set:
            pages["seed_set"] = f"/seed-sets/{args.seed_set}"
        if args.sets:
            pages["population_compare"] = f"/seed-sets/compare?sets={args.sets}"
        if args.only:
            pages = {name: path for name, path in pages.items() if name in args.only.split(",")}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for name, path in pages.items():
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(1500)  # plotly draws after load
                page.screenshot(path=str(HERE / f"{name}.png"), full_page=True)
                print(f"{name}: {path}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
