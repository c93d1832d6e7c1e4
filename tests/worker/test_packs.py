"""Jobs run packs: compatible queued train jobs train together in one child, each member an ordinary job.

In-process (``execute_job`` with a real training child) for what the records must show, and with
real worker processes on both deployments for kill -9 mid-pack.
"""

from __future__ import annotations

import math
import signal
import threading

import pytest
import torch

from core.db import crud, jobs
from core.db.session import session_scope
from core.ml import checkpoints
from core.ml.model import ModelConfig, Transformer
from core.packing import pack_key
from core.settings import Settings
from core.specs.errors import SpecError
from core.specs.run import RunSpec
from core.submit import check_init_from, dispatch, submit_run
from tests.worker.support import FAST, SLOW, WORKER_ENV, events, job_row, run_row, wait_for, wait_status
from worker.execute import DROPPED, execute_job

SETTINGS = Settings(lease_seconds=3, heartbeat_seconds=1, stop_grace_seconds=5)


@pytest.fixture(autouse=True)
def worker_env(monkeypatch):
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)


def submit(engine, *specs: dict, pack_size: int | None = None) -> list[tuple[int, int]]:
    """Queue each flat spec through the one submit path: [(run id, job id)]."""
    with session_scope(engine) as session:
        queued = [submit_run(session, spec=RunSpec.from_flat(flat), pack_size=pack_size) for flat in specs]
    return [(q.run_id, q.job_id) for q in queued]


def metrics(engine, run_id: int) -> dict[tuple[str, int], float]:
    with session_scope(engine, readonly=True) as session:
        return {(key, step): value for key, step, value in crud.get_metrics(session, run_id=run_id)}


def at_evaluations(recorded: dict) -> dict:
    """The metrics at evaluation steps (0, 10, 20), the timer-written loss's value left out: its window may differ."""
    return {(key, step): (math.nan if key == "train/loss" else value) for (key, step), value in recorded.items()
            if step % 10 == 0}


def test_compatible_queued_runs_train_as_one_pack_and_record_what_their_solo_runs_record(sqlite_engine):
    engine = sqlite_engine
    members = submit(engine, {**FAST, "seed": 0}, {**FAST, "seed": 1, "lr": 3e-3}, {**FAST, "seed": 2, "dropout": 0.0})
    other_shape = submit(engine, {**FAST, "d_model": 32})
    solo = submit(engine, {**FAST, "seed": 1, "lr": 3e-3}, pack_size=1)

    assert execute_job(members[0][1], engine=engine, worker_id="w", settings=SETTINGS) == "SUCCEEDED"
    for run_id, job_id in members:
        job, run = job_row(engine, job_id), run_row(engine, run_id)
        assert (job.status, run.status, run.step, job.attempt) == ("SUCCEEDED", "SUCCEEDED", FAST["steps"], 1)
        assert [e["event"] for e in events(job)] == ["claimed", "packed", "finished"]
    lead = job_row(engine, members[0][1])
    assert events(lead, "packed")[0]["members"] == [job_id for _, job_id in members]
    assert job_row(engine, other_shape[0][1]).status == "QUEUED"  # another shape: another pack
    assert job_row(engine, solo[0][1]).status == "QUEUED"  # pack_size 1: never packed

    assert execute_job(solo[0][1], engine=engine, worker_id="w", settings=SETTINGS) == "SUCCEEDED"
    assert events(job_row(engine, solo[0][1]), "packed") == []
    # Every metric at every evaluation step, as the solo run records it. Between evaluations the training
    # loss is also written on a one-second wall-clock timer (a mean since the last write), so which extra
    # steps carry it, and over which window the mean runs, depends on the machine's speed: compared only
    # where both runs must write it.
    packed, alone = (at_evaluations(metrics(engine, run_id)) for run_id in (members[1][0], solo[0][0]))
    assert packed.keys() == alone.keys()
    assert {step for _, step in packed} == {0, 10, 20}
    assert {step for key, step in packed if key == "train/loss"} == {10, 20}
    worst = max(abs(packed[k] - alone[k]) for k in packed if not math.isnan(alone[k]))
    assert worst < 1e-5, worst
    with session_scope(engine, readonly=True) as session:
        for run_id in (members[1][0], solo[0][0]):
            assert crud.list_snapshot_steps(session, run_id=run_id) == [0, 10, 20]
        assert crud.checkpoint_steps(session, run_id=members[1][0]) == crud.checkpoint_steps(session, run_id=solo[0][0])
        assert run_row(engine, members[1][0]).summary.keys() == run_row(engine, solo[0][0]).summary.keys()


def test_a_duplicate_delivery_of_a_member_trains_nothing(sqlite_engine):
    engine = sqlite_engine
    members = submit(engine, {**FAST, "seed": 0}, {**FAST, "seed": 1})
    assert execute_job(members[0][1], engine=engine, worker_id="w", settings=SETTINGS) == "SUCCEEDED"
    before = metrics(engine, members[1][0])
    assert execute_job(members[1][1], engine=engine, worker_id="w2", settings=SETTINGS) == DROPPED
    assert len(events(job_row(engine, members[1][1]), "claimed")) == 1
    assert metrics(engine, members[1][0]) == before


def test_a_member_whose_loss_turns_nan_fails_alone(sqlite_engine):
    engine = sqlite_engine
    spec = RunSpec.from_flat(FAST)
    torch.manual_seed(0)
    broken = Transformer(ModelConfig.from_spec(spec)).state_dict()
    broken["unembed.weight"][0, 0] = float("nan")
    with session_scope(engine) as session:
        parent = crud.create_run(session, spec=spec.to_flat(), total_steps=0)
        crud.put_checkpoint(session, run_id=parent.id, step=0, kind="weights",
                            data=checkpoints.to_bytes({"model": broken}))
        parent_id = parent.id
    members = submit(engine, {**FAST, "seed": 0}, {**FAST, "seed": 1, "init_from": f"{parent_id}@0"}, {**FAST, "seed": 2})
    execute_job(members[0][1], engine=engine, worker_id="w", settings=SETTINGS)
    statuses = [(job_row(engine, j).status, run_row(engine, r).status) for r, j in members]
    assert statuses == [("SUCCEEDED", "SUCCEEDED"), ("FAILED", "FAILED"), ("SUCCEEDED", "SUCCEEDED")]
    assert "loss became nan" in run_row(engine, members[1][0]).error
    assert run_row(engine, members[2][0]).step == FAST["steps"]


def test_cancelling_one_member_drops_it_and_the_others_train_on(sqlite_engine):
    engine = sqlite_engine
    members = submit(engine, *({**SLOW, "seed": seed} for seed in range(3)))
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(
        execute_job(members[0][1], engine=engine, worker_id="w", settings=SETTINGS)))
    worker.start()
    wait_for(lambda: run_row(engine, members[1][0]).step >= 4, timeout=60, what="the pack to train a few steps")
    with session_scope(engine) as session:
        assert jobs.request_cancel(session, job_id=members[1][1]) == "RUNNING"
    worker.join(timeout=120)
    assert outcome == ["SUCCEEDED"]
    cancelled = run_row(engine, members[1][0])
    assert (job_row(engine, members[1][1]).status, cancelled.status) == ("CANCELLED", "CANCELLED")
    assert cancelled.step < SLOW["steps"]
    for run_id, job_id in (members[0], members[2]):
        assert (job_row(engine, job_id).status, run_row(engine, run_id).step) == ("SUCCEEDED", SLOW["steps"])
    with session_scope(engine, readonly=True) as session:
        stopped_at = max(crud.checkpoint_steps(session, run_id=members[1][0], kind="resume"))
    assert stopped_at == cancelled.step  # it checkpointed where it left the pack
    with session_scope(engine) as session:
        jobs.retry(session, job_id=members[1][1])
    assert execute_job(members[1][1], engine=engine, worker_id="w", settings=SETTINGS) == "SUCCEEDED"
    assert events(job_row(engine, members[1][1]), "claimed")[-1]["from_step"] == stopped_at
    steps = sorted({step for key, step in metrics(engine, members[1][0]) if key == "train/loss"})
    assert steps[-1] == SLOW["steps"]


def test_init_from_weights_of_another_shape_are_refused_before_anything_is_queued(sqlite_engine):
    engine = sqlite_engine
    (parent_run, _), = submit(engine, {**FAST, "d_model": 32})
    with session_scope(engine) as session:
        crud.put_checkpoint(session, run_id=parent_run, step=10, kind="weights", data=b"x")
    spec = RunSpec.from_flat({**FAST, "init_from": f"{parent_run}@10"})
    with session_scope(engine) as session, pytest.raises(SpecError) as caught:
        check_init_from(session, spec.train.init_from, spec=spec)
    assert caught.value.errors[0][0] == "init_from"
    assert "d_model 16 against 32" in caught.value.errors[0][1]


def test_the_pack_key_separates_shapes_and_ignores_values():
    base = RunSpec.from_flat(FAST)
    assert pack_key(base) == pack_key(RunSpec.from_flat({**FAST, "seed": 9, "lr": 1e-2, "dropout": 0.3}))
    for change in ({"d_model": 32}, {"max_len": 4}, {"batch_size": 16}, {"n_layers": 3}, {"device": "cpu"}):
        assert pack_key(base) != pack_key(RunSpec.from_flat({**FAST, **change})), change


def test_kill_9_of_a_worker_mid_pack_resumes_every_member_once(stack, workers):
    engine = stack.engine
    members = submit(engine, *({**SLOW, "seed": seed} for seed in range(3)))
    dispatch(stack.settings, [job_id for _, job_id in members])
    first = stack.start()
    wait_for(lambda: all(run_row(engine, r).step >= 8 for r, _ in members), timeout=90,
             what="every member to be mid-run")
    assert all(len(events(job_row(engine, j), "packed")) == 1 for _, j in members)  # one pack
    workers.signal(first, signal.SIGKILL)
    first.wait()
    stack.start()
    for _, job_id in members:
        wait_status(engine, job_id, "SUCCEEDED", timeout=120)
    for run_id, job_id in members:
        job = job_row(engine, job_id)
        assert events(job, "lost") and events(job, "claimed")[-1]["from_step"] >= 5
        assert run_row(engine, run_id).status == "SUCCEEDED"
        rows = metrics(engine, run_id)
        assert sorted(step for key, step in rows if key == "test/seq_acc") == list(range(SLOW["steps"] + 1))
    assert workers.cleanup() == []
