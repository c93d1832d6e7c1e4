"""A fine-tune whose parent has not reached the step waits in the queue (deferred, no attempt used)
and trains from the parent's weights once they exist: how a whole study is queued at once."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db import crud
from core.db.models import Run
from core.db.session import session_scope
from core.seed_sets import finetune_seed_set
from core.settings import Settings
from core.specs.sweep import SweepSpec
from core.sweeps import create_sweep, expand_sweep
from tests.worker.support import FAST, WORKER_ENV, events, job_row, run_row
from worker.execute import DEFERRED, execute_job

SETTINGS = Settings(lease_seconds=3, heartbeat_seconds=1, stop_grace_seconds=5)


def test_a_fine_tune_waits_for_its_parents_step_then_starts_from_its_weights(sqlite_engine, monkeypatch):
    engine = sqlite_engine
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    with session_scope(engine) as session:
        parents = create_sweep(session, spec=SweepSpec.parse({"overrides": FAST, "seeds": [0]}), name="parents")
        (parent_job,) = expand_sweep(session, sweep_id=parents.sweep_id, pack_size=1)
        tuned = finetune_seed_set(session, parent_sweep_id=parents.sweep_id, step=10, overrides=FAST, pack_size=1)
        (child_job,) = tuned.job_ids
        parent_id = session.scalars(select(Run.id).where(Run.sweep_id == parents.sweep_id)).one()
        child_id = session.scalars(select(Run.id).where(Run.sweep_id == tuned.sweep_id)).one()

    assert execute_job(child_job, engine=engine, worker_id="w", settings=SETTINGS) == DEFERRED
    waiting = job_row(engine, child_job)
    assert (waiting.status, waiting.attempt, run_row(engine, child_id).status) == ("QUEUED", 0, "QUEUED")
    assert events(waiting, "deferred")[0]["reason"] == f"waiting for run {parent_id} to reach step 10 (now at 0)"
    assert waiting.created_at > job_row(engine, parent_job).created_at  # behind what was queued meanwhile

    assert execute_job(parent_job, engine=engine, worker_id="w", settings=SETTINGS) == "SUCCEEDED"
    assert execute_job(child_job, engine=engine, worker_id="w", settings=SETTINGS) == "SUCCEEDED"
    with session_scope(engine, readonly=True) as session:
        parent = {(k, s): v for k, s, v in crud.get_metrics(session, run_id=parent_id)}
        child = {(k, s): v for k, s, v in crud.get_metrics(session, run_id=child_id)}
    scores = sorted(key for key, step in child if step == 0 and key.startswith("score/"))
    assert len(scores) > 4
    # it began where its parent was at step 10: the same head scores on the same probes
    assert [child[(key, 0)] for key in scores] == pytest.approx([parent[(key, 10)] for key in scores], abs=1e-6)
    assert [child[(key, 0)] for key in scores] != pytest.approx([parent[(key, 0)] for key in scores], abs=1e-6)
