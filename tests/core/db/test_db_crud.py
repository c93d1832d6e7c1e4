"""crud helpers against migrated SQLite and PostgreSQL databases."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from core.db import crud, jobs
from core.db.arrays import pack, unpack
from core.db.models import Checkpoint, Job, Metric, ProbeSet, Run, Snapshot, Status
from core.db.session import session_scope

SPEC = {"problem": "parity", "steps": 100, "d_model": 64}


@pytest.fixture
def run_id(engine) -> int:
    with session_scope(engine) as session:
        return crud.create_run(session, spec=SPEC, name="first", preset="fast-parity").id


# ---------------------------------------------------------------- runs and jobs


def test_create_and_get_run(engine, run_id):
    with session_scope(engine) as session:
        run = crud.get_run(session, run_id=run_id)
        assert (run.name, run.preset, run.status) == ("first", "fast-parity", "QUEUED")
        assert run.spec == SPEC and run.total_steps == 100 and run.step == 0
        assert run.tags == [] and run.summary == {} and run.notes == ""
        assert run.created_at.utcoffset().total_seconds() == 0
        assert crud.get_run(session, run_id=run_id + 999) is None


def test_list_runs_filters_pages_and_puts_newest_first(engine):
    with session_scope(engine) as session:
        ids = [
            crud.create_run(session, spec={"problem": problem}, status=status).id
            for problem, status in [
                ("parity", "QUEUED"), ("polynomial", "RUNNING"), ("parity", "SUCCEEDED"),
                ("parity_x", "QUEUED"),
            ]
        ]
    with session_scope(engine) as session:
        assert [r.id for r in crud.list_runs(session)] == ids[::-1]
        assert [r.id for r in crud.list_runs(session, problem="parity")] == [ids[2], ids[0]]
        assert [r.id for r in crud.list_runs(session, status="QUEUED")] == [ids[3], ids[0]]
        assert [r.id for r in crud.list_runs(session, status=["RUNNING", "SUCCEEDED"])] == [ids[2], ids[1]]
        assert [r.id for r in crud.list_runs(session, limit=2, offset=1)] == [ids[2], ids[1]]
        assert crud.count_runs(session, problem="parity") == 2


def test_one_filter_builder_selects_by_every_criterion_of_the_list_pages(engine):
    with session_scope(engine) as session:
        a = crud.create_run(session, spec={"problem": "parity"}, name="Alpha run", tags=["keep", "x"]).id
        b = crud.create_run(session, spec={"problem": "parity"}, notes="see ALPHA", tags=["x_keep"]).id
        c = crud.create_run(session, spec={"problem": "polynomial"}, name="50%_done", status="FAILED").id

    def ids(**criteria) -> list[int]:
        with session_scope(engine, readonly=True) as session:
            query = select(Run.id).where(*crud.run_filters(**criteria)).order_by(Run.id)
            return list(session.scalars(query))

    assert ids() == [a, b, c]
    assert ids(text="alpha") == [a, b]  # name or notes, any case
    assert ids(text="%_") == [c]  # LIKE's wildcards are literal
    assert ids(tag="keep") == [a]  # a whole tag, not part of one
    assert ids(status="failed") == [c] and ids(status="BOGUS") == []  # any case; no such status: none
    assert ids(problem="parity", run_ids={b, c}) == [b]


def test_update_run_sets_fields_and_validates(engine, run_id):
    with session_scope(engine) as session:
        crud.update_run(session, run_id=run_id, status=Status.RUNNING, step=7, summary={"acc": 1.0})
    with session_scope(engine) as session:
        run = crud.get_run(session, run_id=run_id)
        assert (run.status, run.step, run.summary) == ("RUNNING", 7, {"acc": 1.0})
        with pytest.raises(ValueError):
            crud.update_run(session, run_id=run_id, status="BOGUS")
        with pytest.raises(ValueError, match="unknown run fields"):
            crud.update_run(session, run_id=run_id, colour="red")
        with pytest.raises(crud.RunNotFound):
            crud.update_run(session, run_id=run_id + 999, step=1)


def test_jobs_are_created_by_the_life_cycle_with_their_defaults_and_queue(engine, run_id):
    # one way to create a job (core.db.jobs), so none skips queue routing
    assert not hasattr(crud, "create_job")
    with session_scope(engine) as session:
        job_id = jobs.submit_intervention_job(session, run_id=run_id, spec={"kind": "edge"}).id
        gpu_run = crud.create_run(session, spec={**SPEC, "device": "cuda:1"}).id
        gpu_job = jobs.submit_train_job(session, run_id=gpu_run).id
    with session_scope(engine) as session:
        job = crud.get_job(session, job_id=job_id)
        assert (job.kind, job.status, job.queue, job.attempt, job.max_attempts) == (
            "intervene", "QUEUED", "cpu", 0, 3,
        )
        assert (job.fencing_token, job.cancel_requested, job.payload) == (
            0, False, {"spec": {"kind": "edge"}, "history": []})
        assert crud.get_job(session, job_id=gpu_job).queue == "gpu"  # routed by the spec's device


@pytest.mark.parametrize("model, column", [(Run, "status"), (Job, "status"), (Job, "kind")])
def test_check_constraints_reject_unknown_values(engine, run_id, model, column):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            if model is Run:
                session.execute(update(Run).where(Run.id == run_id).values(status="BOGUS"))
            else:
                job = jobs.submit_train_job(session, run_id=run_id)
                setattr(job, column, "BOGUS")
                session.flush()


def test_checkpoint_kind_is_constrained(engine, run_id):
    with pytest.raises(ValueError):
        with session_scope(engine) as session:
            crud.put_checkpoint(session, run_id=run_id, step=1, kind="optimizer", data=b"x")
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            session.add(Checkpoint(run_id=run_id, step=1, kind="optimizer", data=b"", sha256="", nbytes=0))
            session.flush()


# ---------------------------------------------------------------- metrics


def test_metric_upsert_writes_each_key_step_once(engine, run_id):
    with session_scope(engine) as session:
        crud.upsert_metrics(session, run_id=run_id, rows=[("loss", 10, 1.0), ("loss", 0, 2.0)])
    with session_scope(engine) as session:
        written = crud.upsert_metrics(
            session, run_id=run_id,
            rows=[("loss", 10, 0.5), ("loss", 10, 0.25), ("acc", 10, 0.9), ("loss", 20, math.nan)],
        )
        assert written == 3
    with session_scope(engine) as session:
        rows = crud.get_metrics(session, run_id=run_id)
        assert rows[:3] == [("acc", 10, 0.9), ("loss", 0, 2.0), ("loss", 10, 0.25)]
        assert rows[3][:2] == ("loss", 20) and math.isnan(rows[3][2])
        assert session.scalar(select(func.count()).select_from(Metric)) == 4


def test_metric_upsert_batches_large_writes(engine, run_id):
    rows = [(f"m{i % 3}", i, float(i)) for i in range(2 * crud.UPSERT_BATCH_ROWS + 17)]
    for _ in range(2):
        with session_scope(engine) as session:
            crud.upsert_metrics(session, run_id=run_id, rows=rows)
    with session_scope(engine) as session:
        assert len(crud.get_metrics(session, run_id=run_id)) == len(rows)


def test_get_metrics_filters_by_keys_and_literal_prefix(engine, run_id):
    rows = [("eval/accXlen", 1, 2.0), ("eval/acc_len", 1, 1.0), ("train/loss", 1, 3.0)]
    with session_scope(engine) as session:
        crud.upsert_metrics(session, run_id=run_id, rows=rows)
        assert crud.get_metrics(session, run_id=run_id, prefix="eval/acc_") == [rows[1]]
        assert crud.get_metrics(session, run_id=run_id, prefix="eval/") == rows[:2]
        assert crud.get_metrics(session, run_id=run_id, keys=["train/loss"]) == [rows[2]]
        assert crud.get_metrics(session, run_id=run_id, keys=["train/loss"], prefix="eval/") == []


# ---------------------------------------------------------------- probe sets and snapshots


def test_probe_set_round_trip(engine, run_id):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 64, size=(12, 35)).astype(np.uint8)
    lengths = rng.integers(1, 17, size=12).astype(np.int16)
    with session_scope(engine) as session:
        assert crud.get_probe_set(session, run_id=run_id) is None
        crud.put_probe_set(session, run_id=run_id, tokens=tokens, lengths=lengths)
    with session_scope(engine) as session:
        got_tokens, got_lengths = crud.get_probe_set(session, run_id=run_id)
    assert got_tokens.dtype == np.uint8 and got_lengths.dtype == np.int16
    np.testing.assert_array_equal(got_tokens, tokens)
    np.testing.assert_array_equal(got_lengths, lengths)


def test_snapshot_round_trip_is_byte_exact_and_upserts(engine, run_id):
    patterns = np.random.default_rng(1).random((2, 1, 3, 9, 9)).astype(np.float16)
    data = pack(patterns)
    layout = {"axes": ["layer", "head", "probe", "query", "key"], "dtype": "float16"}
    with session_scope(engine) as session:
        crud.put_snapshot(session, run_id=run_id, step=640, data=b"old", shape=[1], layout={})
        crud.put_snapshot(session, run_id=run_id, step=0, data=data, shape=patterns.shape, layout=layout)
        crud.put_snapshot(session, run_id=run_id, step=640, data=data, shape=patterns.shape, layout=layout)
    with session_scope(engine) as session:
        assert crud.list_snapshot_steps(session, run_id=run_id) == [0, 640]
        snapshot = crud.get_snapshot(session, run_id=run_id, step=640)
        assert crud.get_snapshot(session, run_id=run_id, step=1) is None
    assert snapshot.data == data and snapshot.nbytes == len(data)
    assert snapshot.shape == list(patterns.shape) and snapshot.layout == layout
    np.testing.assert_array_equal(unpack(snapshot.data, np.float16, snapshot.shape), patterns)


# ---------------------------------------------------------------- checkpoints


def _corrupt(engine, *, run_id: int, step: int) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Checkpoint)
            .where(Checkpoint.run_id == run_id, Checkpoint.step == step)
            .values(data=b"bit rot")
        )


def test_checkpoint_round_trip_is_byte_exact(engine, run_id):
    data = os.urandom(100_000) + b"\x00" * 10
    with session_scope(engine) as session:
        stored = crud.put_checkpoint(session, run_id=run_id, step=10, kind="resume", data=data)
        assert stored.nbytes == len(data) and len(stored.sha256) == 64
    with session_scope(engine) as session:
        got = crud.get_checkpoint(session, run_id=run_id, step=10, kind="resume")
        assert got.data == data and got.sha256 == stored.sha256
        assert crud.get_checkpoint(session, run_id=run_id, step=10, kind="weights") is None


def test_put_checkpoint_replaces_the_same_step(engine, run_id):
    with session_scope(engine) as session:
        first = crud.put_checkpoint(session, run_id=run_id, step=10, kind="weights", data=b"a")
    with session_scope(engine) as session:
        second = crud.put_checkpoint(session, run_id=run_id, step=10, kind="weights", data=b"bb")
        assert second.id == first.id and second.data == b"bb" and second.nbytes == 2
        assert session.scalar(select(func.count()).select_from(Checkpoint)) == 1


def test_latest_checkpoint_skips_a_corrupt_one(engine, run_id):
    with session_scope(engine) as session:
        for step in (10, 20, 30):
            crud.put_checkpoint(session, run_id=run_id, step=step, kind="resume", data=b"state %d" % step)
        crud.put_checkpoint(session, run_id=run_id, step=40, kind="weights", data=b"weights")
    with session_scope(engine) as session:
        assert crud.latest_checkpoint(session, run_id=run_id, kind="resume").step == 30
    _corrupt(engine, run_id=run_id, step=30)
    with session_scope(engine) as session:
        fallback = crud.latest_checkpoint(session, run_id=run_id, kind="resume")
        assert (fallback.step, fallback.data) == (20, b"state 20")
        with pytest.raises(crud.CorruptCheckpoint):
            crud.get_checkpoint(session, run_id=run_id, step=30, kind="resume")
    for step in (10, 20):
        _corrupt(engine, run_id=run_id, step=step)
    with session_scope(engine) as session:
        assert crud.latest_checkpoint(session, run_id=run_id, kind="resume") is None
        assert crud.latest_checkpoint(session, run_id=run_id, kind="weights").step == 40


def test_prune_checkpoints_keeps_the_newest(engine, run_id):
    with session_scope(engine) as session:
        for step in (5, 1, 4, 2, 3):
            crud.put_checkpoint(session, run_id=run_id, step=step, kind="resume", data=b"r")
        crud.put_checkpoint(session, run_id=run_id, step=1, kind="weights", data=b"w")
    with session_scope(engine) as session:
        assert crud.prune_checkpoints(session, run_id=run_id, kind="resume", keep=2) == 3
        assert crud.prune_checkpoints(session, run_id=run_id, kind="resume", keep=2) == 0
    with session_scope(engine) as session:
        remaining = session.execute(select(Checkpoint.kind, Checkpoint.step).order_by(Checkpoint.id))
        assert sorted(remaining) == [("resume", 4), ("resume", 5), ("weights", 1)]


# ---------------------------------------------------------------- deleting a run


def test_deleting_a_run_cascades_to_its_records(engine, run_id):
    with session_scope(engine) as session:
        other = crud.create_run(session, spec=SPEC, parent_run_id=run_id, parent_step=3).id
        crud.upsert_metrics(session, run_id=run_id, rows=[("loss", 0, 1.0)])
        crud.upsert_metrics(session, run_id=other, rows=[("loss", 0, 1.0)])
        crud.put_probe_set(session, run_id=run_id, tokens=np.zeros((1, 3)), lengths=np.ones(1))
        crud.put_snapshot(session, run_id=run_id, step=0, data=b"s", shape=[1], layout={})
        crud.put_checkpoint(session, run_id=run_id, step=0, kind="resume", data=b"c")
        jobs.submit_train_job(session, run_id=run_id)
    with session_scope(engine) as session:
        session.execute(text("DELETE FROM runs WHERE id = :id"), {"id": run_id})
    with session_scope(engine) as session:
        for model in (Metric, ProbeSet, Snapshot, Checkpoint, Job):
            assert session.scalars(select(model).where(model.run_id == run_id)).all() == []
        child = crud.get_run(session, run_id=other)
        assert child.parent_run_id is None
        assert crud.get_metrics(session, run_id=other) == [("loss", 0, 1.0)]
