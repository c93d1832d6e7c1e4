"""One intervention on every member of a seed set or grid (``core.causal.population``): one job per
member in one request, refusals naming the field with nothing queued, and the results read back as a
distribution next to each member's peakiness.

Submitting and reading use synthetic members (``tests/population_support.py``) with placeholder
weights checkpoint rows, on SQLite and PostgreSQL; the last test trains a tiny seed set and runs the
real jobs.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from core.causal.population import population_intervention_results, submit_population_intervention
from core.causal.results import put_result
from core.db import crud
from core.db.models import Job, Run, Sweep
from core.db.session import session_scope
from core.names import CHECKPOINT_WEIGHTS, score_key
from core.specs.errors import SpecError
from core.specs.run import RunSpec
from core.sweeps import SweepError
from tests.population_support import seed_set_rows, trained_seed_set
from tests.server.conftest import FAST

STEPS = [0, 500, 1000]
SHAPE = {"n_layers": 2, "n_heads": 2, "max_len": 4}  # what the members' heads are checked against
IDEAL = {"kind": "pattern", "variants": ["ideal"], "steps": 1000, "rows_per_len": 4}


def seed_set(session, seeds=range(3), checkpoints=STEPS, **options) -> int:
    """A synthetic seed set whose members hold weights checkpoint rows at ``checkpoints``."""
    sweep_id = seed_set_rows(session, seeds=seeds, steps=STEPS, spec=SHAPE, **options)
    for run in runs_of(session, sweep_id):
        for step in checkpoints:
            crud.put_checkpoint(session, run_id=run.id, step=step, kind=CHECKPOINT_WEIGHTS, data=b"\0")
    return sweep_id


def runs_of(session, sweep_id: int) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))


def job_count(engine) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(select(func.count(Job.id)).where(Job.kind == "intervene"))


def refusal(engine, sweep_id: int, body: dict) -> dict[str, str]:
    """The fields and messages of the SpecError ``body`` raises, checking that nothing was queued."""
    before = job_count(engine)
    with pytest.raises(SpecError) as caught, session_scope(engine) as session:
        submit_population_intervention(session, sweep_id=sweep_id, body=body)
    assert job_count(engine) == before
    return dict(caught.value.errors)


def test_one_request_queues_one_job_per_member_tagged_with_the_population(engine):
    with session_scope(engine) as session:
        sweep_id = seed_set(session)
    with session_scope(engine) as session:
        queued = submit_population_intervention(session, sweep_id=sweep_id, body=IDEAL)
    with session_scope(engine, readonly=True) as session:
        members = [run.id for run in runs_of(session, sweep_id)]
        queued_jobs = [session.get(Job, job_id) for job_id in queued.job_ids]
        assert [run_id for run_id, _ in queued.jobs] == members and queued.skipped == []
        assert [(job.run_id, job.status, job.payload["population"]) for job in queued_jobs] == [
            (run_id, "QUEUED", sweep_id) for run_id in members]
        assert {job.payload["spec"]["kind"] for job in queued_jobs} == {"pattern"}
        listed = population_intervention_results(session, sweep_id=sweep_id)["jobs"]
        assert sorted(job["id"] for job in listed) == sorted(queued.job_ids) and all(job["live"] for job in listed)


@pytest.mark.parametrize("body, field, words", [
    ({"kind": "scramble"}, "kind", "scramble"),
    ({"kind": "probe", "layer": 0}, "kind", "ablate, edge or pattern"),
    ({**IDEAL, "heads": ["L9H9"]}, "heads", "L9H9 is not a head of this run"),
    ({**IDEAL, "steps": 700}, "steps", "3 of 3 members have no weights checkpoint at step 700"),
    ({**IDEAL, "skip_missing": "yes"}, "skip_missing", "true or false"),
    ({**IDEAL, "rows_per_len": 0}, "rows_per_len", "must be >= 1"),
])
def test_bad_input_names_the_field_and_queues_nothing(engine, body, field, words):
    with session_scope(engine) as session:
        sweep_id = seed_set(session)
    errors = refusal(engine, sweep_id, body)
    assert words in errors[field], errors


def test_an_unknown_head_names_the_members_that_lack_it_beside_a_bad_value(engine):
    with session_scope(engine) as session:
        sweep_id = seed_set(session)
    errors = refusal(engine, sweep_id, {**IDEAL, "heads": ["L5H0"], "rows_per_len": 0})
    assert set(errors) == {"heads", "rows_per_len"}, errors
    errors = refusal(engine, sweep_id, {**IDEAL, "heads": ["L5H0"]})
    assert errors["heads"].startswith("seed 0 (run ") and "seed 2 (run " in errors["heads"], errors


def test_members_without_the_checkpoint_refuse_the_request_unless_skip_missing(engine):
    with session_scope(engine) as session:
        sweep_id = seed_set(session)
        late = runs_of(session, sweep_id)[1]
        crud.prune_checkpoints(session, run_id=late.id, kind=CHECKPOINT_WEIGHTS, keep=1)  # keeps step 1000 only
        late_id = late.id
    errors = refusal(engine, sweep_id, {**IDEAL, "steps": 500})
    assert errors["steps"].startswith("1 of 3 members have no weights checkpoint at step 500: seed 1 (run "), errors
    assert '"skip_missing": true to run on the other 2' in errors["steps"]
    with session_scope(engine) as session:
        queued = submit_population_intervention(session, sweep_id=sweep_id, body={**IDEAL, "steps": 500,
                                                                                  "skip_missing": True})
    assert len(queued.jobs) == 2 and late_id not in [run_id for run_id, _ in queued.jobs]
    assert [s["run_id"] for s in queued.skipped] == [late_id] and "step 500" in queued.skipped[0]["reason"]


def test_a_member_still_queued_is_missing_not_refused_for_its_heads(engine):
    """A member with no metrics and no checkpoints has no circuit heads either: what it lacks is training."""
    with session_scope(engine) as session:
        sweep_id = seed_set(session)
        queued = crud.create_run(session, spec={"problem": "parity", **SHAPE}, sweep_id=sweep_id)
        crud.update_run(session, run_id=queued.id, sweep_cell={"seed": 9})
    errors = refusal(engine, sweep_id, {**IDEAL, "steps": "last"})
    assert list(errors) == ["steps"] and "have no weights checkpoint yet: seed 9 (run " in errors["steps"], errors
    with session_scope(engine) as session:
        done = submit_population_intervention(session, sweep_id=sweep_id, body={**IDEAL, "skip_missing": True})
    assert len(done.jobs) == 3 and [s["member"] for s in done.skipped] == [f"seed 9 (run {queued.id})"]


def test_a_population_with_no_checkpoints_or_no_runs_is_refused_on_sweep_id(engine):
    with session_scope(engine) as session:
        bare = seed_set(session, checkpoints=[])
        empty = Sweep(name="empty", spec={}, axes={"seed": [0]})
        session.add(empty)
        session.flush()
        empty_id = empty.id
    assert "no member of sweep" in refusal(engine, bare, {**IDEAL, "steps": "last"})["sweep_id"]
    assert "has no runs yet" in refusal(engine, empty_id, IDEAL)["sweep_id"]
    with pytest.raises(SweepError), session_scope(engine) as session:
        submit_population_intervention(session, sweep_id=987654, body=IDEAL)


def test_a_grid_checks_heads_against_each_members_own_shape(engine):
    with session_scope(engine) as session:
        sweep = Sweep(name="heads", spec={}, axes={"n_heads": [1, 2], "seed": [0]})
        session.add(sweep)
        session.flush()
        sweep_id = sweep.id
        for n_heads in (1, 2):
            spec = RunSpec.from_flat({**FAST, "n_heads": n_heads, "d_model": 16}).to_flat()
            run = crud.create_run(session, spec=spec, sweep_id=sweep_id)
            crud.update_run(session, run_id=run.id, sweep_cell={"n_heads": n_heads, "seed": 0})
            crud.put_checkpoint(session, run_id=run.id, step=20, kind=CHECKPOINT_WEIGHTS, data=b"\0")
    errors = refusal(engine, sweep_id, {"kind": "ablate", "heads": ["L0H1"]})
    assert errors["heads"].startswith("n_heads=1,seed=0 (run ") and "n_heads=2" not in errors["heads"], errors
    with session_scope(engine) as session:
        assert len(submit_population_intervention(session, sweep_id=sweep_id,
                                                  body={"kind": "ablate", "heads": ["L0H0"]}).jobs) == 2


def test_results_are_one_point_per_member_beside_its_own_peakiness(engine):
    """The ideal EoI map keeps accuracy on the sharp seeds only: the spreads and the split at the bar say so."""
    with session_scope(engine) as session:
        sweep_id = seed_set(session, seeds=range(4), midpoint=lambda seed: None if seed == 3 else 100 + 200 * seed,
                            width=40)
        runs = runs_of(session, sweep_id)
        accuracy = [1.0, 0.9, 0.3, 0.0]
        heads = [run.summary["heads"]["eoi_locator"]["label"] for run in runs]  # seed 3, never sharp: L0H1
        assert len(set(heads)) == 2  # not vacuous: the members' EoI locators are different heads
        for run, head, value in zip(runs, heads, accuracy):
            result = {"mean": value, "baseline": {"mean": 1.0}, "peaky_thres": {head: None}}
            put_result(session, run_id=run.id, step=1000, intervention="pattern/ideal", target=head,
                       spec=IDEAL, result=result)
        put_result(session, run_id=runs[0].id, step=500, intervention="pattern/ideal", target="L0H0", spec=IDEAL,
                   result={"mean": 0.5, "baseline": {"mean": 0.9}})  # earlier: the latest step is the one shown
        put_result(session, run_id=runs[0].id, step=1000, intervention="ablate/zero", target="L1H1",
                   spec={**IDEAL, "kind": "ablate", "heads": ["L1H1"]}, result={"mean": 0.2, "baseline": {"mean": 1.0}})
        put_result(session, run_id=runs[0].id, step=1000, intervention="probe/t", target="blocks.0.hook_resid_mid",
                   spec={"kind": "probe"}, result={"accuracy": 0.7, "chance": 0.1})  # no accuracy pair: not a series
        eoi = [crud.get_metrics(session, run_id=run.id, keys=[score_key("eoi_locator", "peaky_thres", 0, int(head[-1]))])
               for run, head in zip(runs, heads)]
    with session_scope(engine, readonly=True) as session:
        data = population_intervention_results(session, sweep_id=sweep_id)
    ideal, ablate = sorted(data["series"], key=lambda s: s["intervention"], reverse=True)
    assert (ideal["intervention"], ideal["slot"], ablate["slot"]) == ("pattern/ideal", "eoi_locator", "L1H1")
    assert [p["accuracy"] for p in ideal["points"]] == accuracy and [p["seed"] for p in ideal["points"]] == [0, 1, 2, 3]
    assert [p["step"] for p in ideal["points"]] == [1000] * 4
    peaky = [dict((s, v) for _, s, v in rows)[1000] for rows in eoi]
    assert [p["x"]["peaky_thres"] for p in ideal["points"]] == pytest.approx(peaky)
    assert [p["x"]["label"] for p in ideal["points"]] == heads
    assert [p["circuit"]["iteration"]["label"] for p in ideal["points"]] == [
        run.summary["heads"]["iteration"]["label"] for run in runs]
    assert ideal["accuracy"]["mean"] == pytest.approx(np.mean(accuracy)) and ideal["accuracy"]["n"] == 4
    assert ideal["drop"]["max"] == pytest.approx(1.0) and ideal["baseline"]["min"] == 1.0
    sharp = [a for a, p in zip(accuracy, peaky) if p >= 0.9]
    assert 0 < len(sharp) < 4  # not vacuous: the bar splits these members
    assert ideal["by_sharpness"]["sharp"]["n"] == len(sharp)
    assert ideal["by_sharpness"]["sharp"]["mean"] == pytest.approx(np.mean(sharp))
    assert ablate["points"][0]["x"]["role"] == "iteration" and len(ablate["missing"]) == 3
    with session_scope(engine, readonly=True) as session:
        earlier = population_intervention_results(session, sweep_id=sweep_id, step=500)
    (only,) = earlier["series"]
    assert [(p["seed"], p["accuracy"]) for p in only["points"]] == [(0, 0.5)]


@pytest.mark.usefixtures("one_thread")
def test_real_jobs_on_a_trained_seed_set_give_one_point_per_member(sqlite_engine):
    pytest.importorskip("torch")
    from core.causal.jobs import execute_intervention_job

    sweep_id = trained_seed_set(sqlite_engine, seeds=[0, 1], spec=FAST)
    with session_scope(sqlite_engine) as session:
        queued = submit_population_intervention(session, sweep_id=sweep_id, body={**IDEAL, "steps": "last"})
    for job_id in queued.job_ids:
        assert execute_intervention_job(sqlite_engine, job_id) == "SUCCEEDED"
    with session_scope(sqlite_engine, readonly=True) as session:
        data = population_intervention_results(session, sweep_id=sweep_id)
    (series,) = [s for s in data["series"] if s["slot"] == "eoi_locator"]
    assert [p["seed"] for p in series["points"]] == [0, 1] and [p["step"] for p in series["points"]] == [20, 20]
    assert all(0.0 <= p["accuracy"] <= 1.0 and 0.0 <= p["baseline"] <= 1.0 for p in series["points"])
    assert all(p["x"]["peaky_thres"] is not None and p["x"]["peaky_abs"] is not None for p in series["points"])
    assert series["accuracy"]["n"] == 2 and series["missing"] == []
