"""Fixtures for the server tests: a served database holding one really trained run, and clients on it.

Training even a tiny model costs a second or two, so the database is built ONCE per test module and
dialect (SQLite file, then a PostgreSQL schema; PostgreSQL skips when unreachable unless CI=true):

- ``served_url``   (module) URL of a migrated database with one trained run (FAST spec, 20 steps,
                   snapshots at steps 0, 10, 20, named ``trained``). Tests may add runs; filter by a
                   tag of your own (``unique_tag``) when counting.
- ``trained_run``  (module) that run's id.
- ``app``          (module) ``create_app(Settings(database_url=served_url))``.
- ``app_client``   (module) a ``TestClient`` on ``app`` (cookies kept, so CSRF works once primed).
- ``csrf``         (function) headers carrying the client's CSRF token for JSON POSTs:
                   ``app_client.post(url, json=..., headers=csrf)``.
- ``form_token``   helper: the ``csrf_token`` form field of a rendered page, for HTML form POSTs.
- ``unique_tag``   (function) a fresh tag, so a test counts only the runs it made.

Names are stable: other server tests (shares, sweeps, compare) may use them; add, don't rename.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL, make_url

from core.db.session import make_engine, session_scope, upgrade
from core.settings import Settings
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.conftest import fresh_schema

# The tiny spec of tests/worker/support.py: parity, max_len 3, d_model 16, 20 steps (~1 s on one thread).
FAST = {"problem": "parity", "max_len": 3, "n_train_per_len": 16, "n_test_per_len": 8, "probe_per_len": 2,
        "d_model": 16, "batch_size": 8, "steps": 20, "eval_every": 10, "snapshot_every": 10, "checkpoint_every": 5}


def train_into(url: URL, *, name: str = "trained", spec: dict | None = None) -> int:
    """Queue a run of ``spec`` (FAST) and train it here, in this process, on one torch thread."""
    torch = pytest.importorskip("torch")
    from core.recording import execute_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            run_id = submit_run(session, spec=RunSpec.from_flat(spec or FAST), name=name, tags=["trained"]).run_id
        assert execute_training(engine, run_id) == "SUCCEEDED"
        return run_id
    finally:
        engine.dispose()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    if request.param == "sqlite":
        url = make_url(f"sqlite:///{tmp_path_factory.mktemp('served') / 'circuitboard.db'}")
        upgrade(url)
        yield url
        return
    with fresh_schema(request.getfixturevalue("postgres_database")) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def trained_run(served_url: URL) -> int:
    return train_into(served_url)


@pytest.fixture(scope="module")
def app(served_url: URL, trained_run: int):
    from server.main import create_app

    application = create_app(Settings(database_url=served_url.render_as_string(hide_password=False)))
    yield application
    application.state.engine.dispose()


@pytest.fixture(scope="module")
def app_client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as client:  # a loopback Host: the open dashboard answers it
        client.get("/")  # sets the CSRF cookie
        yield client


def page_csrf(html: str) -> str:
    """The token in a page's <meta name="csrf-token"> ('' when the app has no CSRF middleware)."""
    match = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
    return match[1] if match else ""


def form_token(html: str) -> dict[str, str]:
    """The hidden csrf form field of a rendered form, as {name: value} ({} when there is none)."""
    match = re.search(r'<input type="hidden" name="(csrf_token)" value="([^"]*)"', html)
    return {match[1]: match[2]} if match else {}


@pytest.fixture
def csrf(app_client: TestClient) -> dict[str, str]:
    token = page_csrf(app_client.get("/").text)
    return {"X-CSRF-Token": token} if token else {}


@pytest.fixture
def unique_tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"

