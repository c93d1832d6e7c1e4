"""Sweeps: the grid's validation (SweepSpec), its rows, an idempotent expansion, and the cells view.

Also the job-kind rules in core.db.jobs that sweeps and interventions rely on: only a train job
drives its run's status.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db import crud, jobs
from core.db.models import Run, Status, Sweep
from core.db.session import session_scope
from core.specs.errors import SpecError
from core.specs.sweep import MAX_SWEEP_CELLS, SweepSpec, cell_label
from core.sweeps import SweepError, create_sweep, expand_sweep, sweep_cells
from tests.worker.support import FAST

TINY = {"preset": "fast-parity", "overrides": {**FAST, "warmup_steps": 0},
        "axes": {"d_model": [16, 32], "max_len": [2, 3]}}


# ---------------------------------------------------------------- SweepSpec


def test_cells_cross_the_axes_then_the_seeds_in_order():
    spec = SweepSpec.parse({**TINY, "seeds": [0, 1]})
    cells = spec.cells()
    assert len(cells) == 8
    assert cells[:3] == [{"d_model": 16, "max_len": 2, "seed": 0}, {"d_model": 16, "max_len": 2, "seed": 1},
                         {"d_model": 16, "max_len": 3, "seed": 0}]
    runs = spec.runs()
    assert [(run.model.d_model, run.problem.max_len, run.train.seed) for _, run in runs][-1] == (32, 3, 1)
    assert all(run.train.steps == FAST["steps"] and run.model.d_mlp == 4 * run.model.d_model for _, run in runs)
    assert spec.stored_axes() == {"d_model": [16, 32], "max_len": [2, 3], "seed": [0, 1]}
    assert SweepSpec.from_stored(spec.base(), spec.stored_axes()).cells() == cells


def test_integral_floats_name_the_same_cell_as_ints():
    assert SweepSpec.parse({**TINY, "axes": {"d_model": [16.0, 32]}}).cells() == [{"d_model": 16}, {"d_model": 32}]


@pytest.mark.parametrize("axes, seeds, field, words", [
    ({"d_model": [16, 4096]}, None, "axes.d_model", "must be <= 2048 (got 4096)"),
    ({"d_model": [18]}, None, "axes.d_model", "divisible by n_heads"),
    ({"d_modl": [16]}, None, "axes.d_modl", "did you mean 'd_model'"),
    ({"problem": [1]}, None, "axes.problem", "not a numeric key"),
    ({"seed": [1, 2]}, None, "axes.seed", "seeds"),
    ({"d_model": [16, 16]}, None, "axes.d_model", "repeat"),
    ({"d_model": []}, None, "axes.d_model", "at least one value"),
    ({"n_layers": [1.5]}, None, "axes.n_layers", "integers"),
    ({"d_model": [16], "max_len": [2], "lr": [0.1]}, None, "axes", "at most 2 axes"),
    ({}, None, "axes", "at least one axis"),
    ({"d_model": [16]}, [-1], "seeds", "0.."),
    ({"d_model": list(range(8, 8 * 65, 8))[:64], "max_len": list(range(1, 34))}, None, "axes", f"at most {MAX_SWEEP_CELLS}"),
])
def test_bad_grids_are_refused_naming_the_axis(axes, seeds, field, words):
    with pytest.raises(SpecError) as caught:
        SweepSpec.parse({**TINY, "axes": axes, "seeds": seeds})
    messages = dict(caught.value.errors)
    assert field in messages, caught.value.errors
    assert words in messages[field]


def test_a_cross_field_problem_names_the_key_and_the_cell():
    with pytest.raises(SpecError) as caught:  # steps 20 < warmup 100 in every cell
        SweepSpec.parse({**TINY, "overrides": FAST})
    assert caught.value.errors == [("warmup_steps", "must be <= steps (20) (got 100) in cell d_model=16,max_len=2")]


def test_unknown_fields_and_presets_are_refused():
    with pytest.raises(SpecError, match="preset: unknown preset"):
        SweepSpec.parse({**TINY, "preset": "nope"})
    with pytest.raises(SpecError, match="grid"):
        SweepSpec.parse({**TINY, "grid": {}})


# ---------------------------------------------------------------- rows and expansion


def test_create_then_expand_twice_makes_each_cell_once(engine):
    spec = SweepSpec.parse({**TINY, "seeds": [3]})
    with session_scope(engine) as session:
        created = create_sweep(session, spec=spec, name="widths")
    with session_scope(engine) as session:
        sweep = session.get(Sweep, created.sweep_id)
        assert (sweep.name, sweep.preset, sweep.axes) == ("widths", "fast-parity",
                                                          {"d_model": [16, 32], "max_len": [2, 3], "seed": [3]})
        job = jobs.get_job(session, job_id=created.job_id)
        assert (job.kind, job.status, job.run_id, job.queue, job.payload["sweep_id"]) == (
            "sweep", "QUEUED", None, "cpu", created.sweep_id)
        first = expand_sweep(session, sweep_id=created.sweep_id)
    with session_scope(engine) as session:  # the sweep job ran again after a crash
        again = expand_sweep(session, sweep_id=created.sweep_id)
        runs = session.query(Run).filter(Run.sweep_id == created.sweep_id).order_by(Run.id).all()
        assert first == again and len(set(first)) == 4
        assert [run.sweep_cell for run in runs] == [c for c in spec.cells()]
        assert runs[0].spec["d_model"] == 16 and runs[-1].spec["max_len"] == 3 and runs[0].spec["seed"] == 3
        assert all(run.status == "QUEUED" and run.name.startswith("widths d_model=") for run in runs)


def test_sweep_cells_pairs_each_cell_with_its_run(engine):
    with session_scope(engine) as session:
        created = create_sweep(session, spec=SweepSpec.parse(TINY), name=None)
    with session_scope(engine) as session:
        before = sweep_cells(session, sweep_id=created.sweep_id)
        assert [cell["label"] for cell in before] == ["d_model=16,max_len=2", "d_model=16,max_len=3",
                                                      "d_model=32,max_len=2", "d_model=32,max_len=3"]
        assert all(cell["run"] is None for cell in before)
        expand_sweep(session, sweep_id=created.sweep_id)
    with session_scope(engine) as session:
        cells = sweep_cells(session, sweep_id=created.sweep_id)
        assert all(cell["run"]["status"] == "QUEUED" for cell in cells)
        assert cells[2]["cell"] == {"d_model": 32, "max_len": 2}
        assert crud.get_run(session, run_id=cells[2]["run"]["id"]).spec["d_model"] == 32
        with pytest.raises(SweepError):
            sweep_cells(session, sweep_id=999)
        with pytest.raises(SweepError):
            expand_sweep(session, sweep_id=999)


# ---------------------------------------------------------------- kinds and run status


def _finished_run(session) -> int:
    run = crud.create_run(session, spec=FAST, status=Status.SUCCEEDED)
    return run.id


def test_an_intervene_job_never_changes_its_run_status(engine):
    with session_scope(engine) as session:
        run_id = _finished_run(session)
        job = jobs.submit_intervention_job(session, run_id=run_id, spec={"kind": "ablate", "layer": 1, "head": 0})
        assert (job.kind, job.payload["spec"]["kind"], job.queue) == ("intervene", "ablate", "cpu")
    with session_scope(engine) as session:
        claim = jobs.claim(session, job_id=job.id, worker_id="w", lease_seconds=30)
        assert claim.kind == "intervene" and claim.from_step == 0
    with session_scope(engine) as session:
        assert crud.get_run(session, run_id=run_id).status == "SUCCEEDED"
        assert jobs.release(session, job_id=job.id, token=claim.token, reason="crash", lost=True) == "QUEUED"
    with session_scope(engine) as session:
        assert crud.get_run(session, run_id=run_id).status == "SUCCEEDED"
        claim = jobs.claim(session, job_id=job.id, worker_id="w", lease_seconds=30)
    with session_scope(engine) as session:
        assert jobs.finish(session, job_id=job.id, token=claim.token, status="FAILED", error="boom")
    with session_scope(engine) as session:
        run = crud.get_run(session, run_id=run_id)
        assert (run.status, run.error) == ("SUCCEEDED", None)
        assert jobs.get_job(session, job_id=job.id).status == "FAILED"


def test_a_train_job_still_drives_its_run(engine):
    with session_scope(engine) as session:
        run = crud.create_run(session, spec=FAST)
        job = jobs.submit_train_job(session, run_id=run.id)
    with session_scope(engine) as session:
        claim = jobs.claim(session, job_id=job.id, worker_id="w", lease_seconds=30)
    with session_scope(engine) as session:
        assert crud.get_run(session, run_id=run.id).status == "RUNNING"
        jobs.finish(session, job_id=job.id, token=claim.token, status="FAILED", error="boom")
    with session_scope(engine) as session:
        assert crud.get_run(session, run_id=run.id).status == "FAILED"


def test_unknown_runs_are_refused(engine):
    with session_scope(engine) as session, pytest.raises(LookupError):
        jobs.submit_intervention_job(session, run_id=12345, spec={})


def test_a_cell_label_too_long_for_the_key_column_is_hashed_deterministically(engine):
    """Two long float axes and a large seed make a key past runs.idempotency_key's 100 characters."""
    from core.sweeps import KEY_LENGTH, submit_key

    spec = SweepSpec.parse({**TINY, "axes": {"weight_decay": [1.2345678901234567e-300, 2.3456789012345678e-300],
                                             "min_lr_ratio": [1.2345678901234567e-300, 2.3456789012345678e-300]},
                            "seeds": [2**31 - 1]})
    cells = spec.cells()
    keys = [submit_key(123456, cell) for cell in cells]
    assert len(f"sweep123456:{cell_label(cells[0])}") > KEY_LENGTH == 100
    assert all(len(key) <= KEY_LENGTH and key.startswith("sweep123456:sha256:") for key in keys)
    assert len(set(keys)) == len(cells) and keys == [submit_key(123456, cell) for cell in cells]
    assert submit_key(7, {"d_model": 16, "seed": 0}) == "sweep7:d_model=16,seed=0"  # short labels stay readable
    sweep_id = 10**7  # a long-lived database's sweep: its plain keys run to 103 characters
    with session_scope(engine) as session:
        session.add(Sweep(id=sweep_id, name="long floats", preset=spec.preset, spec=spec.base(),
                          axes=spec.stored_axes()))
    with session_scope(engine) as session:  # PostgreSQL would refuse a key over 100 characters
        first = expand_sweep(session, sweep_id=sweep_id)
    with session_scope(engine) as session:
        assert expand_sweep(session, sweep_id=sweep_id) == first and len(set(first)) == 4
        stored = session.scalars(select(Run.idempotency_key).where(Run.sweep_id == sweep_id)).all()
        assert sorted(stored) == sorted(submit_key(sweep_id, cell) for cell in cells)
        assert all(key.startswith(f"sweep{sweep_id}:sha256:") for key in stored)
