"""The job life cycle in the database (core.db.jobs), on SQLite and PostgreSQL, without processes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url

from core.db import crud, jobs
from core.db.models import Status, utcnow
from core.db.session import session_scope
from tests.worker.support import events, job_row, new_job, run_row


def claim(engine, job_id, worker="w1", lease=60):
    with session_scope(engine) as session:
        return jobs.claim(session, job_id=job_id, worker_id=worker, lease_seconds=lease)


def test_submit_queues_the_job_and_its_run(engine):
    run_id, job_id = new_job(engine)
    job = job_row(engine, job_id)
    assert (job.status, job.kind, job.queue, job.attempt, job.fencing_token) == ("QUEUED", "train", "cpu", 0, 0)
    assert run_row(engine, run_id).status == "QUEUED"
    assert job.progress == {"step": 0, "total": 20}


def test_claim_takes_a_queued_job_once(engine):
    run_id, job_id = new_job(engine)
    first = claim(engine, job_id)
    assert (first.job_id, first.token, first.attempt, first.run_id, first.from_step) == (job_id, 1, 1, run_id, 0)
    assert claim(engine, job_id, worker="w2") is None  # a duplicate delivery claims nothing
    job = job_row(engine, job_id)
    assert (job.status, job.worker_id, job.fencing_token) == ("RUNNING", "w1", 1)
    assert job.lease_expires_at > utcnow() + timedelta(seconds=50)
    assert run_row(engine, run_id).status == "RUNNING"
    assert [e["event"] for e in events(job)] == ["claimed"]


def test_concurrent_claims_have_one_winner(engine):
    _, job_id = new_job(engine)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: claim(engine, job_id, worker=f"w{i}"), range(8)))
    assert sum(c is not None for c in claims) == 1
    assert job_row(engine, job_id).fencing_token == 1


def test_claim_next_takes_the_oldest_job_of_its_queues(engine):
    _, first = new_job(engine)
    _, gpu = new_job(engine, device="cuda")
    _, second = new_job(engine)
    assert job_row(engine, gpu).queue == "gpu"
    taken = []
    with session_scope(engine) as session:
        for _ in range(3):
            got = jobs.claim_next(session, queues=["cpu"], worker_id="w", lease_seconds=60)
            taken.append(got and got.job_id)
    assert taken == [first, second, None]


def test_heartbeat_and_fence_hold_only_for_the_current_token(engine):
    _, job_id = new_job(engine)
    old = claim(engine, job_id)
    with session_scope(engine) as session:
        assert jobs.heartbeat(session, job_id=job_id, token=old.token, lease_seconds=60)
        jobs.fence(job_id, old.token)(session)  # the owner passes
    with session_scope(engine) as session:  # its lease expires; the job is re-queued and re-claimed
        jobs.reap(session, now=utcnow() + timedelta(seconds=120))
    new = claim(engine, job_id, worker="w2")
    assert new.token == old.token + 1
    with session_scope(engine) as session:
        assert not jobs.heartbeat(session, job_id=job_id, token=old.token, lease_seconds=60)
        assert not jobs.report_progress(session, job_id=job_id, token=old.token, progress={"step": 99})
        assert not jobs.finish(session, job_id=job_id, token=old.token, status="SUCCEEDED")
        with pytest.raises(jobs.LeaseLost):
            jobs.fence(job_id, old.token)(session)
        jobs.fence(job_id, new.token)(session)
    job = job_row(engine, job_id)
    assert (job.status, job.worker_id) == ("RUNNING", "w2") and job.progress.get("step") != 99


def test_finish_ends_job_and_run_together(engine):
    run_id, job_id = new_job(engine)
    token = claim(engine, job_id).token
    with session_scope(engine) as session:
        assert jobs.report_progress(session, job_id=job_id, token=token, progress={"step": 3, "loss": float("nan")})
        assert jobs.finish(session, job_id=job_id, token=token, status="FAILED", error="ValueError: boom")
    job, run = job_row(engine, job_id), run_row(engine, run_id)
    assert (job.status, job.error, run.status, run.error) == ("FAILED", "ValueError: boom", "FAILED", "ValueError: boom")
    assert job.progress == {"step": 3, "loss": None}  # NaN is stored as null (PostgreSQL JSON has no NaN)
    assert job.finished_at is not None and run.finished_at is not None
    with session_scope(engine) as session:  # a finished job is owned by no one
        assert not jobs.finish(session, job_id=job_id, token=token, status="SUCCEEDED")


def test_cancel_of_a_queued_job_is_immediate(engine):
    run_id, job_id = new_job(engine)
    with session_scope(engine) as session:
        assert jobs.request_cancel(session, job_id=job_id) == "CANCELLED"
    assert claim(engine, job_id) is None  # it never starts
    assert run_row(engine, run_id).status == "CANCELLED"


def test_cancel_of_a_running_job_flags_it_for_its_worker(engine):
    _, job_id = new_job(engine)
    claim(engine, job_id)
    with session_scope(engine) as session:
        assert jobs.request_cancel(session, job_id=job_id) == "RUNNING"
    assert job_row(engine, job_id).cancel_requested
    with session_scope(engine) as session:  # a worker lost while cancelling ends CANCELLED, not re-queued
        [reaped] = jobs.reap(session, now=utcnow() + timedelta(seconds=120))
    assert reaped.status == "CANCELLED"
    with session_scope(engine) as session, pytest.raises(jobs.JobNotFound):
        jobs.request_cancel(session, job_id=10_000)


def test_reaper_requeues_lost_jobs_then_fails_them_with_a_reason(engine):
    run_id, job_id = new_job(engine)
    with session_scope(engine) as session:
        assert jobs.reap(session) == []  # nothing expired
    for attempt in (1, 2, 3):
        claimed = claim(engine, job_id, lease=3)
        assert claimed.attempt == attempt
        with session_scope(engine) as session:
            assert jobs.reap(session, now=utcnow() + timedelta(seconds=1)) == []  # lease still valid
            [reaped] = jobs.reap(session, now=utcnow() + timedelta(seconds=63))
        assert reaped.reason == "worker lost: no heartbeat for 63 s"
        assert reaped.status == ("FAILED" if attempt == 3 else "QUEUED")
        if attempt < 3:
            job = job_row(engine, job_id)
            assert (job.status, job.worker_id, job.lease_expires_at) == ("QUEUED", None, None)
            assert run_row(engine, run_id).status == "QUEUED"
    job, run = job_row(engine, job_id), run_row(engine, run_id)
    assert job.status == run.status == "FAILED"
    assert job.error == "worker lost: no heartbeat for 63 s (gave up after 3 attempts)" == run.error
    assert [e["reason"] for e in events(job, "lost")] == ["worker lost: no heartbeat for 63 s"] * 3


def test_release_after_a_graceful_shutdown_costs_no_attempt(engine):
    _, job_id = new_job(engine)
    token = claim(engine, job_id).token
    with session_scope(engine) as session:
        assert jobs.release(session, job_id=job_id, token=token, reason="shutdown", lost=False) == "QUEUED"
        assert jobs.release(session, job_id=job_id, token=token, reason="again", lost=False) is None
    assert job_row(engine, job_id).attempt == 0
    assert claim(engine, job_id).attempt == 1


def test_retry_requeues_a_failed_job_with_fresh_attempts(engine):
    run_id, job_id = new_job(engine)
    token = claim(engine, job_id).token
    with session_scope(engine) as session:
        with pytest.raises(ValueError, match="RUNNING"):
            jobs.retry(session, job_id=job_id)
    with session_scope(engine) as session:
        jobs.finish(session, job_id=job_id, token=token, status=Status.FAILED, error="boom")
    with session_scope(engine) as session:
        jobs.retry(session, job_id=job_id)
    job, run = job_row(engine, job_id), run_row(engine, run_id)
    assert (job.status, job.attempt, job.error, job.finished_at) == ("QUEUED", 0, None, None)
    assert (run.status, run.error) == ("QUEUED", None)
    assert claim(engine, job_id).token == token + 1


def test_claim_reports_the_step_a_train_job_resumes_from(engine):
    run_id, job_id = new_job(engine)
    with session_scope(engine) as session:
        for step in (5, 10):
            crud.put_checkpoint(session, run_id=run_id, step=step, kind="resume", data=b"x")
        crud.put_checkpoint(session, run_id=run_id, step=15, kind="weights", data=b"x")
    assert claim(engine, job_id).from_step == 10
    assert job_row(engine, job_id).progress == {"step": 10, "total": 20}


def test_list_jobs_newest_first(engine):
    ids = [new_job(engine)[1] for _ in range(3)]
    with session_scope(engine) as session:
        jobs.request_cancel(session, job_id=ids[0])
        assert [job.id for job in jobs.list_jobs(session)] == ids[::-1]
        assert [job.id for job in jobs.list_jobs(session, status="CANCELLED")] == ids[:1]


def test_queued_jobs_left_unclaimed_are_due_for_publishing_once_per_period(engine):
    from datetime import timedelta

    from core.db.models import utcnow

    _, old = new_job(engine)
    _, running = new_job(engine)
    with session_scope(engine) as session:
        jobs.claim(session, job_id=running, worker_id="w", lease_seconds=30)
    later = utcnow() + timedelta(seconds=10)
    with session_scope(engine) as session:
        assert jobs.due_for_publishing(session, older_than=5, now=later) == [(old, "cpu")]
    with session_scope(engine) as session:  # stamped: not due again within the period
        assert jobs.due_for_publishing(session, older_than=5, now=later + timedelta(seconds=1)) == []
        assert jobs.due_for_publishing(session, older_than=5, now=later + timedelta(seconds=6)) == [(old, "cpu")]
    with session_scope(engine) as session:
        assert jobs.due_for_publishing(session, older_than=60) == []  # nothing is that old
        assert jobs.due_for_publishing(session, older_than=5, queues=["gpu"], now=later + timedelta(seconds=20)) == []


# ---------------------------------------------------------------- a final status is never undone


def test_a_final_status_written_with_the_runs_records_is_confirmed_by_its_owner_only(engine):
    run_id, job_id = new_job(engine)
    token = claim(engine, job_id).token
    with session_scope(engine) as session:  # what the training child does in its last write
        crud.update_run(session, run_id=run_id, status="SUCCEEDED", summary={"verdict": "done"})
        assert jobs.finish(session, job_id=job_id, token=token, status="SUCCEEDED")
    with session_scope(engine) as session:  # its supervisor, after the child exited
        assert jobs.finish(session, job_id=job_id, token=token, status="SUCCEEDED")
        assert jobs.ended_by(session, job_id=job_id, token=token) == "SUCCEEDED"
        assert not jobs.finish(session, job_id=job_id, token=token, status="FAILED")  # not another ending
        assert not jobs.finish(session, job_id=job_id, token=token + 1, status="SUCCEEDED")  # nor another owner
        assert jobs.ended_by(session, job_id=job_id, token=token + 1) is None
    job = job_row(engine, job_id)
    assert [e["event"] for e in events(job)] == ["claimed", "finished"]  # the confirmation writes nothing
    assert run_row(engine, run_id).status == "SUCCEEDED"


def test_the_reaper_never_demotes_a_run_that_finished_before_its_job(engine):
    run_id, job_id = new_job(engine)  # a worker of the old two-commit finish, killed between the two
    claim(engine, job_id, lease=3)
    with session_scope(engine) as session:
        crud.update_run(session, run_id=run_id, status="SUCCEEDED", finished_at=utcnow() - timedelta(seconds=2))
    finished_at = run_row(engine, run_id).finished_at
    with session_scope(engine) as session:
        [reaped] = jobs.reap(session, now=utcnow() + timedelta(seconds=63))
    assert reaped.status == "SUCCEEDED"
    job, run = job_row(engine, job_id), run_row(engine, run_id)
    assert (job.status, run.status, run.finished_at) == ("SUCCEEDED", "SUCCEEDED", finished_at)
    assert events(job, "lost")[0]["became"] == "SUCCEEDED"
    assert claim(engine, job_id) is None  # nothing to claim: it never trains again

    failed_run, failed = new_job(engine)  # the same for a run that failed on its own
    claim(engine, failed, lease=3)
    with session_scope(engine) as session:
        crud.update_run(session, run_id=failed_run, status="FAILED", error="TrainingError: loss became nan")
        jobs.reap(session, now=utcnow() + timedelta(seconds=63))
    job = job_row(engine, failed)
    assert (job.status, job.error) == ("FAILED", "TrainingError: loss became nan")


def test_seconds_without_progress_counts_from_the_claim_and_then_from_each_report(engine):
    _, job_id = new_job(engine)
    assert jobs.seconds_without_progress(job_row(engine, job_id)) is None  # QUEUED: nothing to wait for
    token = claim(engine, job_id).token
    claimed_at = job_row(engine, job_id).started_at
    job = job_row(engine, job_id)
    assert jobs.seconds_without_progress(job, now=claimed_at + timedelta(seconds=30)) == pytest.approx(30, abs=1)
    later = utcnow() + timedelta(seconds=100)
    with session_scope(engine) as session:
        assert jobs.report_progress(session, job_id=job_id, token=token, progress={"step": 4}, now=later)
    job = job_row(engine, job_id)
    assert jobs.seconds_without_progress(job, now=later + timedelta(seconds=7)) == pytest.approx(7)
    with session_scope(engine) as session:
        jobs.finish(session, job_id=job_id, token=token, status="SUCCEEDED")
    assert jobs.seconds_without_progress(job_row(engine, job_id)) is None


def test_transact_waits_out_a_locked_sqlite_file_only_when_patient(tmp_path):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from core.db.session import make_engine
    from tests.worker.support import migrated

    path = tmp_path / "locked.db"
    migrated(make_url(f"sqlite:///{path}")).dispose()
    engine = make_engine(f"sqlite:///{path}?timeout=0.2")
    run_id, _ = new_job(engine)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")

    def rename(session) -> None:
        crud.update_run(session, run_id=run_id, name="renamed")

    with pytest.raises(OperationalError) as caught:
        jobs.transact(engine, rename)
    assert jobs.is_transient(caught.value)
    assert jobs.describe(caught.value) == "(sqlite3.OperationalError) database is locked"
    release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
    release.start()
    jobs.transact(engine, rename, patience=30)  # lands once the lock is gone
    release.join()
    assert run_row(engine, run_id).name == "renamed"
    holder.close()
    engine.dispose()
