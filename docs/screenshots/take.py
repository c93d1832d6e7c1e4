"""Take the README's screenshots of every page, from a database holding real runs.

    python docs/screenshots/take.py sqlite:////path/to/circuitboard.db [--run 1 --compare 1,2 --sweep 1]

Starts ``circuitboard serve --no-worker`` on a free loopback port over that database, opens each
page in Debian's Chromium (/usr/bin/chromium) with Playwright, and writes PNGs beside this file:
runs, new run, run (attention viewer at the run's last snapshot), compare, sweep, a run's share
links, and the shared (read-only) view of the run.
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
    parser.add_argument("--run", type=int, default=1)
    parser.add_argument("--compare", default="1,2")
    parser.add_argument("--sweep", type=int)
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
        share = httpx.post(f"{base}/api/runs/{args.run}/shares", headers={"Authorization": "Bearer cli"},
                           json={"label": "screenshot"}).json()["url"]
        pages = {"runs": "/", "new_run": "/runs/new?preset=fast-polynomial", "run": f"/runs/{args.run}",
                 "compare": f"/compare?runs={args.compare}&layer=1", "shares": f"/runs/{args.run}/shares",
                 "shared_run": share}
        if args.sweep:
            pages["sweep"] = f"/sweeps/{args.sweep}"
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
