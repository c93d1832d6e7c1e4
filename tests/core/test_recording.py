"""Recording: a tiny run trained end to end into a real database (SQLite, and PostgreSQL when present)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from core.db import crud
from core.db.models import Checkpoint, Status
from core.db.session import make_engine, session_scope, upgrade
from core.problems import build_dataset
from core.snapshots import unpack
from core.specs.run import RunSpec
from core.summary import summarize
from tests.conftest import fresh_schema

torch = pytest.importorskip("torch")

from core.ml import checkpoints  # noqa: E402
from core.ml.train import TrainingError  # noqa: E402
from core.recording import KEEP_RESUME_CHECKPOINTS, execute_training  # noqa: E402

SPEC = {
    "problem": "parity", "max_len": 3, "n_train_per_len": 16, "n_test_per_len": 8, "probe_per_len": 2,
    "d_model": 16, "dropout": 0.1, "shuffle": True, "lr": 1e-2, "batch_size": 8, "steps": 12,
    "eval_every": 4, "snapshot_every": 4, "checkpoint_every": 2, "eval_generate": True,
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('recording') / 'circuitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgresql_engine(postgres_database):
    """A freshly migrated schema of the session's PostgreSQL database (tests/conftest.py)."""
    with fresh_schema(postgres_database) as url:
        upgrade(url)
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request):
    return request.getfixturevalue(f"{request.param}_engine")


def new_run(engine, **overrides) -> int:
    spec = RunSpec.from_flat({**SPEC, **overrides})
    with session_scope(engine) as session:
        return crud.create_run(session, spec=spec.to_flat(), preset="test").id


def state_at(engine, run_id: int, step: int, kind: str = checkpoints.WEIGHTS) -> dict:
    with session_scope(engine) as session:
        row = crud.get_checkpoint(session, run_id=run_id, step=step, kind=kind)
        assert row is not None, (run_id, step, kind)
        return checkpoints.from_bytes(row.data)["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def checkpoint_steps(engine, run_id: int, kind: str) -> list[int]:
    with session_scope(engine) as session:
        query = select(Checkpoint.step).where(Checkpoint.run_id == run_id, Checkpoint.kind == kind)
        return sorted(session.scalars(query))


def test_a_run_is_recorded_end_to_end(engine):
    run_id = new_run(engine)
    progress = []
    assert execute_training(engine, run_id, on_progress=progress.append) == Status.SUCCEEDED.value
    assert progress and progress[-1].step == 12

    with session_scope(engine) as session:
        run = crud.get_run(session, run_id=run_id)
        assert run.status == Status.SUCCEEDED.value
        assert run.step == 12 and run.total_steps == 12
        assert run.error is None
        assert run.started_at is not None and run.finished_at is not None
        assert run.finished_at >= run.started_at
        rows = crud.get_metrics(session, run_id=run_id)
        probe = crud.get_probe_set(session, run_id=run_id)
        snapshot_steps = crud.list_snapshot_steps(session, run_id=run_id)
        snap = crud.get_snapshot(session, run_id=run_id, step=12)
        summary = run.summary

    # metrics: each (key, step) once, accuracy at every evaluation, scores at every snapshot
    pairs = [(key, step) for key, step, _ in rows]
    assert len(pairs) == len(set(pairs))
    steps_of = lambda key: sorted(s for k, s in pairs if k == key)  # noqa: E731
    assert steps_of("test/seq_acc") == [0, 4, 8, 12]
    assert steps_of("test/gen_acc") == [0, 4, 8, 12]
    assert steps_of("score/iteration/peaky_thres/L1H0") == [0, 4, 8, 12]
    assert steps_of("score/eoi_locator/inv/L0H0/len3") == [0, 4, 8, 12]
    assert 12 in steps_of("train/loss")
    assert all(np.isfinite(value) for _, _, value in rows)

    # the probe set is the spec's
    data = build_dataset(RunSpec.from_flat(SPEC).problem)
    assert probe is not None
    np.testing.assert_array_equal(probe[0], data.probe_tokens)
    np.testing.assert_array_equal(probe[1], data.probe_lengths)

    # snapshots at the expected steps, decodable, on the probe set
    assert snapshot_steps == [0, 4, 8, 12]
    patterns = unpack(snap.data, snap.layout)
    assert list(snap.shape) == list(patterns.shape) == [6, 2, 1, 9, 9]
    assert snap.nbytes == len(snap.data)
    assert snap.layout["lengths"] == data.probe_lengths.tolist()

    # weights at every snapshot step; resume checkpoints pruned to the newest few
    assert checkpoint_steps(engine, run_id, checkpoints.WEIGHTS) == [0, 4, 8, 12]
    resume = checkpoint_steps(engine, run_id, checkpoints.RESUME)
    assert len(resume) <= KEEP_RESUME_CHECKPOINTS == 3
    assert resume == [8, 10, 12]
    assert same(state_at(engine, run_id, 12), state_at(engine, run_id, 12, checkpoints.RESUME))

    # the stored summary is the one the metrics give (after a JSON round trip)
    assert summary["accuracy"]["test"]["step"] == 12
    assert set(summary["heads"]) == {"eoi_locator", "iteration"}
    expected = summarize(rows, finished=True)  # the stored summary is written at the end
    assert summary["verdict"] == expected["verdict"]
    assert summary["heads"] == expected["heads"]
    assert summary["accuracy"]["test"]["seq_acc"] == expected["accuracy"]["test"]["seq_acc"]


def test_init_from_starts_at_the_parents_weights(sqlite_engine):
    parent = new_run(sqlite_engine, steps=8)
    execute_training(sqlite_engine, parent)
    child = new_run(sqlite_engine, steps=4, seed=3, init_from=f"{parent}@4")
    assert execute_training(sqlite_engine, child) == Status.SUCCEEDED.value
    parent_at_4 = state_at(sqlite_engine, parent, 4)
    assert same(state_at(sqlite_engine, child, 0), parent_at_4)
    assert not same(state_at(sqlite_engine, child, 4), parent_at_4)
    # the child's own seed would have started elsewhere
    alone = new_run(sqlite_engine, steps=4, seed=3)
    execute_training(sqlite_engine, alone)
    assert not same(state_at(sqlite_engine, alone, 0), parent_at_4)


def test_a_run_whose_last_checkpoint_is_final_is_not_trained_again(sqlite_engine, monkeypatch):
    import core.recording as recording

    run_id = new_run(sqlite_engine, steps=4)
    execute_training(sqlite_engine, run_id)
    with session_scope(sqlite_engine) as session:
        crud.update_run(session, run_id=run_id, status=Status.RUNNING)  # as if its worker died at the end

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(recording, "train", must_not_train)
    assert execute_training(sqlite_engine, run_id) == Status.SUCCEEDED.value
    with session_scope(sqlite_engine) as session:
        assert crud.get_run(session, run_id=run_id).status == Status.SUCCEEDED.value


def test_a_missing_init_checkpoint_fails_the_run(sqlite_engine):
    parent = new_run(sqlite_engine, steps=4)
    execute_training(sqlite_engine, parent)
    child = new_run(sqlite_engine, steps=4, init_from=f"{parent}@3")  # no checkpoint at step 3
    with pytest.raises(TrainingError, match="step 3"):
        execute_training(sqlite_engine, child)
    with session_scope(sqlite_engine) as session:
        run = crud.get_run(session, run_id=child)
        assert run.status == Status.FAILED.value
        assert "no checkpoint at step 3" in run.error


def test_an_interrupted_run_resumes_to_the_uninterrupted_end(sqlite_engine):
    whole = new_run(sqlite_engine)
    execute_training(sqlite_engine, whole)
    interrupted = new_run(sqlite_engine)
    polls = iter(range(1, 10**6))
    assert execute_training(sqlite_engine, interrupted, should_stop=lambda: next(polls) > 7) == Status.RUNNING.value
    assert checkpoint_steps(sqlite_engine, interrupted, checkpoints.RESUME)[-1] == 7  # written when it stopped
    assert execute_training(sqlite_engine, interrupted) == Status.SUCCEEDED.value
    assert same(state_at(sqlite_engine, interrupted, 12), state_at(sqlite_engine, whole, 12))

    with session_scope(sqlite_engine) as session:
        assert crud.get_run(session, run_id=interrupted).status == Status.SUCCEEDED.value
        assert crud.list_snapshot_steps(session, run_id=interrupted) == [0, 4, 8, 12]
        a = {(k, s): v for k, s, v in crud.get_metrics(session, run_id=interrupted, prefix="score/")}
        b = {(k, s): v for k, s, v in crud.get_metrics(session, run_id=whole, prefix="score/")}
    assert a == b  # the resumed run's attention scores match the uninterrupted run's, step for step
    assert len(checkpoint_steps(sqlite_engine, interrupted, checkpoints.RESUME)) <= KEEP_RESUME_CHECKPOINTS


def test_a_failing_run_is_marked_failed(sqlite_engine, monkeypatch):
    import core.recording as recording

    def failing_train(spec, callbacks, **kwargs):
        raise TrainingError("loss became nan at step 1")

    run_id = new_run(sqlite_engine, steps=2)
    monkeypatch.setattr(recording, "train", failing_train)
    with pytest.raises(TrainingError):
        execute_training(sqlite_engine, run_id)
    with session_scope(sqlite_engine) as session:
        run = crud.get_run(session, run_id=run_id)
        assert run.status == Status.FAILED.value
        assert run.error == "loss became nan at step 1"
        assert run.finished_at is not None


def test_an_unknown_run_raises(sqlite_engine):
    with pytest.raises(crud.RunNotFound):
        execute_training(sqlite_engine, 10**6)


# ---------------------------------------------------------------- dropped connections


@pytest.mark.postgres
def test_writes_survive_their_connection_being_terminated_mid_transaction(postgresql_engine):
    """Every 3rd write kills its own backend (pg_terminate_backend) inside the transaction: retried, it lands."""
    from sqlalchemy import text

    run_id = new_run(postgresql_engine)
    calls, killed = [0], [0]

    def guard(session):
        calls[0] += 1
        if calls[0] % 3 == 0 and calls[0] % 2:  # the retry of that write (an even call) goes through
            killed[0] += 1
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    status = execute_training(postgresql_engine, run_id, guard=guard)
    assert status == "SUCCEEDED"
    assert killed[0] >= 3  # the connection really was lost, several times, mid-run
    with session_scope(postgresql_engine) as session:
        run = crud.get_run(session, run_id=run_id)
        assert (run.status, run.step) == ("SUCCEEDED", SPEC["steps"])
        assert crud.list_snapshot_steps(session, run_id=run_id) == [0, 4, 8, 12]
        steps = [step for key, step, _ in crud.get_metrics(session, run_id=run_id) if key == "test/seq_acc"]
        assert steps == [0, 4, 8, 12]


def test_a_write_failing_for_another_reason_is_not_retried(sqlite_engine):
    from sqlalchemy.exc import IntegrityError

    from core.db.jobs import transact

    calls = []

    def fail(session):
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate"))

    with pytest.raises(IntegrityError):
        transact(sqlite_engine, fail)
    assert len(calls) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the device choice by CUDA's absence")
def test_the_workers_device_applies_only_when_the_spec_names_none(sqlite_engine):
    unpinned = new_run(sqlite_engine, steps=2)
    with pytest.raises(TrainingError, match="device 'cuda:0' requested but CUDA is not available"):
        execute_training(sqlite_engine, unpinned, device="cuda:0")  # the worker's device was used
    pinned = new_run(sqlite_engine, steps=2, device="cpu")
    assert execute_training(sqlite_engine, pinned, device="cuda:0") == "SUCCEEDED"  # the spec's device wins
