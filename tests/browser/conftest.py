"""Fixtures for the browser tests: a live server, a live local worker, and the system Chromium.

- ``live_url``   (function) a SQLite file, migrated, and ``uvicorn --factory server.main:create_app``
                 serving it on a free port; yields the base URL (``http://127.0.0.1:PORT``).
- ``start_worker`` (function) a callable that starts ``python -m worker.local --db URL`` on the same
                 database (one torch thread, short leases); every process is stopped after the test.
- ``page``       (function) a Playwright page in Debian's Chromium (/usr/bin/chromium; never a
                 downloaded browser). It records console errors and page errors in ``page.problems``
                 and fails the test on any dialog (an ``alert`` means an injection ran).

Without Chromium or Playwright the tests skip, unless CI=true, where they fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SCREENS = Path(os.environ.get("CIRCUITBOARD_SCREENS", "/tmp/screens"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests need {reason} when CI=true")
    pytest.skip(f"{reason} unavailable; set CI=true to make this a failure")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(db_url: str) -> dict[str, str]:
    env = {**os.environ, "CIRCUITBOARD_DATABASE_URL": db_url, "CIRCUITBOARD_BROKER_URL": "",
           "CIRCUITBOARD_AUTH_TOKEN": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "CIRCUITBOARD_LEASE_SECONDS": "10", "CIRCUITBOARD_HEARTBEAT_SECONDS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


@pytest.fixture
def db_file_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'circuitboard.db'}"


def live_server(db_url: str, folder: Path) -> Iterator[str]:
    """uvicorn on a free loopback port serving ``db_url``: yields its base URL once, stops it after."""
    port = _free_port()
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "server.main:create_app",
                                    "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                   cwd=ROOT, env=_env(db_url), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the server did not start:\n" + (folder / "server.log").read_text())
                time.sleep(0.2)
            yield base
        finally:
            _stop(process)


@pytest.fixture
def live_url(db_file_url: str, tmp_path: Path) -> Iterator[str]:
    yield from live_server(db_file_url, tmp_path)


@pytest.fixture
def start_worker(db_file_url: str, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "worker.local", "--db", db_file_url, "--poll", "0.2"],
                                   cwd=ROOT, env=_env(db_file_url), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        _stop(process)


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        _unavailable(f"Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package")
    SCREENS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.problems = []
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and page.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))

        def on_dialog(dialog):
            page.problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()
        page.on("dialog", on_dialog)
        yield page
        context.close()
        browser.close()
