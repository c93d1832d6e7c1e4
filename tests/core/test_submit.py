"""core.submit: an idempotent re-submit answers with the run's train job, and dispatch never raises."""

from __future__ import annotations

import logging
import socket

import pytest

from core.db import jobs
from core.db.session import session_scope
from core.settings import Settings
from core.specs.run import RunSpec
from core.submit import dispatch, submit_run
from tests.worker.support import FAST


@pytest.fixture
def engine(sqlite_engine):
    return sqlite_engine  # SQLite is enough here


def test_a_resend_returns_the_runs_train_job_even_after_an_intervention(engine):
    with session_scope(engine) as session:
        first = submit_run(session, spec=RunSpec.from_flat(FAST), name="once", key="k1")
    with session_scope(engine) as session:
        intervene = jobs.submit_intervention_job(session, run_id=first.run_id, spec={})
        assert intervene.id > first.job_id  # the run's newest job is now the intervention
    with session_scope(engine) as session:
        again = submit_run(session, spec=RunSpec.from_flat(FAST), name="once", key="k1")
    assert (again.run_id, again.job_id, again.created) == (first.run_id, first.job_id, False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_dispatch_to_an_unreachable_broker_logs_and_leaves_the_job_queued(engine, caplog):
    with session_scope(engine) as session:
        queued = submit_run(session, spec=RunSpec.from_flat(FAST), name="no broker")
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False),
                        broker_url=f"redis://127.0.0.1:{closed_port()}/0")
    with caplog.at_level(logging.WARNING, logger="core.submit"):
        dispatch(settings, [queued.job_id])  # after publish's retries: a warning, no exception
    assert f"jobs {queued.job_id}: not published yet" in caplog.text
    with session_scope(engine, readonly=True) as session:
        assert jobs.get_job(session, job_id=queued.job_id).status == "QUEUED"
