"""Fine-tuning a whole seed set from another, and the paper's studies as sweep presets (core.seed_sets,
core.studies): what they queue, member by member, and what they refuse before queueing anything."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.db import crud
from core.db.models import Job, Run, Sweep
from core.db.session import session_scope
from core.seed_sets import finetune_seed_set
from core.specs.errors import SpecError
from core.specs.sweep import SweepSpec
from core.studies import STUDIES, launch_study
from core.sweeps import create_sweep, expand_sweep

BASE = {"max_len": 3, "n_train_per_len": 16, "n_test_per_len": 8, "probe_per_len": 1, "d_model": 16,
        "batch_size": 8, "steps": 40, "warmup_steps": 0, "eval_every": 10, "snapshot_every": 10, "checkpoint_every": 10}


def seed_set(session, seeds=(0, 1, 2), **overrides) -> int:
    spec = SweepSpec.parse({"preset": "fast-parity", "overrides": {**BASE, **overrides}, "seeds": list(seeds)})
    created = create_sweep(session, spec=spec, name="parents")
    expand_sweep(session, sweep_id=created.sweep_id)
    return created.sweep_id


def counts(session) -> tuple[int, int, int]:
    return tuple(session.scalar(select(func.count(t.id))) for t in (Sweep, Run, Job))


def test_each_member_starts_from_its_own_parent_at_the_step(engine):
    with session_scope(engine) as session:
        parents = seed_set(session)
        tuned = finetune_seed_set(session, parent_sweep_id=parents, step=20, preset="fast-parity",
                                  overrides={**BASE, "trainable": "mlp2"}, pack_size=3)
        parent_runs = {run.sweep_cell["seed"]: run.id for run in
                       session.scalars(select(Run).where(Run.sweep_id == parents))}
        children = list(session.scalars(select(Run).where(Run.sweep_id == tuned.sweep_id).order_by(Run.id)))
        assert [run.sweep_cell for run in children] == [{"seed": 0}, {"seed": 1}, {"seed": 2}]
        for run in children:
            parent = parent_runs[run.sweep_cell["seed"]]
            assert run.spec["init_from"] == f"{parent}@20" and run.spec["seed"] == run.sweep_cell["seed"]
            assert (run.parent_run_id, run.parent_step, run.spec["trainable"]) == (parent, 20, "mlp2")
        assert [session.get(Job, job_id).payload["pack_size"] for job_id in tuned.job_ids] == [3, 3, 3]
        assert session.get(Sweep, tuned.sweep_id).axes == {"seed": [0, 1, 2]}


@pytest.mark.parametrize("change, field, words", [
    ({"parent_sweep_id": 999}, "seed_set", "there is no seed set 999"),
    ({"step": 15}, "step", "record no weights at step 15"),
    ({"step": 50}, "step", "record no weights at step 50"),
    ({"overrides": {**BASE, "d_model": 32}}, "init_from", "do not fit this model (d_model 32 against 16"),
])
def test_bad_fine_tunes_are_refused_naming_the_field_and_queue_nothing(engine, change, field, words):
    with session_scope(engine) as session:
        parents = seed_set(session)
        before = counts(session)
        arguments = {"parent_sweep_id": parents, "step": 20, "preset": "fast-parity", "overrides": BASE, **change}
        with pytest.raises(SpecError) as caught:
            finetune_seed_set(session, **arguments)
        assert any(f == field and words in message for f, message in caught.value.errors), caught.value.errors
        assert counts(session) == before  # nothing written, even before the caller's rollback


def test_a_finished_parent_without_the_checkpoint_is_refused(engine):
    with session_scope(engine) as session:
        parents = seed_set(session, seeds=(0,))
        run = session.scalars(select(Run).where(Run.sweep_id == parents)).one()
        run.status = "SUCCEEDED"
        crud.put_checkpoint(session, run_id=run.id, step=10, kind="weights", data=b"w")
        finetune_seed_set(session, parent_sweep_id=parents, step=10, preset="fast-parity", overrides=BASE)
        with pytest.raises(SpecError) as caught:
            finetune_seed_set(session, parent_sweep_id=parents, step=20, preset="fast-parity", overrides=BASE)
        assert caught.value.errors[0][0] == "step"


def test_the_cpu_dynamics_study_queues_four_arms_whose_fine_tunes_follow_their_own_parents(engine):
    with session_scope(engine) as session:
        launched = launch_study(session, "paper-dynamics-cpu")
        arms = launched.sweep_ids
        assert list(arms) == ["polynomial", "parity", "parity from polynomial", "parity from polynomial, MLP2 only"]
        runs = {arm: list(session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))
                for arm, sweep_id in arms.items()}
        assert all(len(members) == 8 for members in runs.values())
        parents = {run.spec["seed"]: run.id for run in runs["polynomial"]}
        for arm in ("parity from polynomial", "parity from polynomial, MLP2 only"):
            for run in runs[arm]:
                assert run.spec["init_from"] == f"{parents[run.spec['seed']]}@{STUDIES['paper-dynamics-cpu'].arms[2].at_step}"
                assert run.spec["problem"] == "parity"
        assert {run.spec["trainable"] for run in runs["parity from polynomial, MLP2 only"]} == {"mlp2"}
        assert {run.spec.get("init_from") for run in runs["parity"]} == {None}


def test_the_scaling_study_is_the_papers_1680_cell_grid(engine):
    with session_scope(engine) as session:
        launched = launch_study(session, "paper-scaling")
        sweep = session.get(Sweep, launched.sweep_ids["scaling"])
        assert len(sweep.axes["max_len"]) * len(sweep.axes["d_model"]) == 1680
        assert session.scalar(select(func.count(Run.id)).where(Run.sweep_id == sweep.id)) == 1680
    with session_scope(engine) as session, pytest.raises(SpecError):
        launch_study(session, "paper-nothing")
