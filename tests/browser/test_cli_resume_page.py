"""A CLI run interrupted and then resumed from the dashboard (issue 14), with real processes throughout.

``circuitboard train`` (``python -m core.cli train``) trains a tiny run in the foreground on a SQLite
file; once it has written a resume checkpoint past step 0 it gets SIGINT, as a terminal's Ctrl-C
sends it, and must exit 130 saying how to resume. Only then do the dashboard (uvicorn) and a local
worker start on the same file. In Chromium the run page shows the run CANCELLED with its retry button
and no cancel button; a click on retry re-queues the job, the worker resumes it from the checkpoint
(its claim records the step it went on from, never 0) and the page follows it to SUCCEEDED at the
spec's last step, with every evaluation recorded once across the two sittings.
"""

from __future__ import annotations

import signal

import pytest

from core.db import crud, jobs
from core.db.session import make_engine, session_scope, upgrade
from tests.browser.conftest import live_server
from tests.worker.support import FAST, events, foreground_train, only_run, wait_for

pytestmark = pytest.mark.browser

# ~100 steps/s on one thread: the run is still training seconds after its first checkpoints.
SPEC = {**FAST, "steps": 400, "eval_every": 20, "snapshot_every": 100, "checkpoint_every": 20, "warmup_steps": 0}
INTERRUPT_AFTER = 40  # steps trained before Ctrl-C: at least two resume checkpoints


def step_of(engine) -> int:
    run = only_run(engine)
    return 0 if run is None else run.step


@pytest.fixture
def interrupted(db_file_url):
    """A foreground run stopped with SIGINT after INTERRUPT_AFTER steps: (engine, the run as it stopped, the
    CLI's exit status, its stderr)."""
    upgrade(db_file_url)  # so the polls below find the tables before the CLI has migrated them
    cli = foreground_train(db_file_url, SPEC)
    try:
        engine = make_engine(db_file_url)
        wait_for(lambda: cli.poll() is not None or step_of(engine) >= INTERRUPT_AFTER, timeout=90, interval=0.1,
                 what=f"the CLI run to pass step {INTERRUPT_AFTER}")
        assert cli.poll() is None, "the CLI ended before it was interrupted:\n" + cli.communicate()[1]
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    yield engine, only_run(engine), cli.returncode, err
    engine.dispose()


def test_a_cli_run_interrupted_and_then_resumed_from_the_dashboard(interrupted, db_file_url, tmp_path, start_worker,
                                                                  page):
    engine, stopped, returncode, err = interrupted
    assert returncode == 130, err
    assert "SIGINT: cancelling after a checkpoint" in err
    assert f"run {stopped.id} CANCELLED" in err and f"circuitboard train --resume {stopped.id}" in err
    with session_scope(engine, readonly=True) as session:
        job = jobs.latest_train_job(session, run_id=stopped.id)
        job_id, job_status = job.id, job.status
        checkpoint = max(crud.checkpoint_steps(session, run_id=stopped.id, kind="resume"))  # written on SIGINT
    assert (stopped.status, job_status) == ("CANCELLED", "CANCELLED")
    # the run's step is its last progress report, which may lag the stop's checkpoint by up to a second of steps
    assert INTERRUPT_AFTER <= stopped.step <= checkpoint < SPEC["steps"]

    server = live_server(db_file_url, tmp_path)
    base = next(server)
    try:
        page.goto(f"{base}/runs/{stopped.id}")
        assert page.text_content("[data-live=status]") == "CANCELLED"
        assert page.text_content("[data-live=progress-text]") == f"step {stopped.step:,} / {SPEC['steps']:,}"
        assert page.is_hidden("#cancel") and page.is_visible("#retry")
        page.evaluate("() => { window.__sameDocument = true; }")

        start_worker()
        page.click("#retry")
        page.wait_for_function("() => document.body.dataset.runStatus === 'SUCCEEDED'", timeout=60_000)
        assert page.evaluate("() => window.__sameDocument === true")  # followed live, no reload
        assert page.text_content("[data-live=status]") == "SUCCEEDED"
        assert page.text_content("[data-live=progress-text]").startswith(f"step {SPEC['steps']:,}")
        assert page.is_hidden("#retry") and page.is_hidden("#cancel")
        page.locator(".run-head").screenshot(path=str(tmp_path / "cli_resumed_head.png"))
        assert page.problems == []
    finally:
        next(server, None)

    with session_scope(engine, readonly=True) as session:
        run = crud.get_run(session, run_id=stopped.id)
        job = jobs.get_job(session, job_id=job_id)
        assert (run.status, run.step, job.status) == ("SUCCEEDED", SPEC["steps"], "SUCCEEDED")
        assert [e["event"] for e in events(job)].count("retried") == 1
        resumed = events(job, "claimed")[-1]
        assert resumed["from_step"] == checkpoint > 0  # went on from the checkpoint, not from scratch
        assert events(job, "claimed")[0]["worker"].startswith("cli:") and not resumed["worker"].startswith("cli:")
        evaluated = [step for key, step, _ in crud.get_metrics(session, run_id=run.id) if key == "test/seq_acc"]
    assert evaluated == list(range(0, SPEC["steps"] + 1, SPEC["eval_every"]))  # each once, across both sittings
