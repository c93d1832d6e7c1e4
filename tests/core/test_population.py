"""Population views against numpy: bands over seeds (NaN and missing members left out), emergence,
steps to 0.99 and their ratio, a grid at a step, the sweeps index, and the clear errors of bad input.

The records are synthetic rows (``tests/population_support.py``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import delete

from core import population as P
from core.db import crud
from core.db.models import Metric, Run, Status, Sweep
from core.db.session import session_scope
from core.names import score_key
from core.specs.errors import SpecError
from core.sweeps import SweepError
from tests.population_support import ACC, grid_rows, seed_set_rows

STEPS = list(range(0, 1001, 100))


def numpy_stats(column: list[float]) -> dict:
    real = np.array([v for v in column if v is not None and not math.isnan(v)])
    return {"n": real.size, "mean": real.mean(), "std": real.std(), "min": real.min(), "max": real.max(),
            "q25": np.quantile(real, 0.25), "median": np.median(real), "q75": np.quantile(real, 0.75)}


def test_band_is_numpy_per_step_leaving_out_nan_none_and_missing_members(engine):
    with session_scope(engine) as session:
        runs = [crud.create_run(session, spec={"problem": "parity", "steps": 20}).id for _ in range(4)]
        series = [{0: 0.1, 10: 0.5, 20: 0.9}, {0: 0.2, 10: math.nan, 20: 0.7}, {0: 0.3, 20: None}, {10: 0.4}]
        for run_id, rows in zip(runs, series):
            crud.upsert_metrics(session, run_id=run_id, rows=[("k", step, value) for step, value in rows.items()])
        crud.upsert_metrics(session, run_id=runs[3], rows=[("other", 0, 5.0)])  # another key: not a member's
    with session_scope(engine, readonly=True) as session:
        found = P.bands(session, {"k": [(run_id, "k") for run_id in runs], "none": []})
        band, empty = found["k"], found["none"]
        nan_only = P.bands(session, {"one": [(runs[1], "k")]})["one"]
        # two keys in one curve (members whose circuit heads differ) pool step by step
        pooled = P.bands(session, {"mixed": [(runs[0], "k"), (runs[1], "k"), (runs[3], "other")]})["mixed"]
    assert band["steps"] == [0, 10, 20] and band["n"] == [3, 2, 2]
    for j, column in enumerate([[0.1, 0.2, 0.3], [0.5, 0.4], [0.9, 0.7]]):
        expected = numpy_stats(column)
        for name in P.BAND_STATS:
            assert band[name][j] == pytest.approx(expected[name], abs=1e-9), (name, j)
    assert empty["steps"] == [] and nan_only["steps"] == [0, 10, 20] and nan_only["n"] == [1, 0, 1]
    assert nan_only["mean"][1] is None and nan_only["std"][0] == pytest.approx(0, abs=1e-9)
    assert pooled["steps"] == [0, 10, 20] and pooled["n"] == [3, 1, 2]
    assert pooled["mean"][0] == pytest.approx((0.1 + 0.2 + 5.0) / 3) and pooled["max"][0] == 5.0
    assert pooled["std"][0] == pytest.approx(np.std([0.1, 0.2, 5.0])) and pooled["min"][2] == 0.7
    assert P.spread([None, math.nan])["mean"] is None


def test_seed_set_bands_are_the_stored_rows_over_seeds(engine):
    with session_scope(engine) as session:
        sweep_id = seed_set_rows(session, seeds=range(6), steps=STEPS)
        runs = session.query(Run).filter(Run.sweep_id == sweep_id).order_by(Run.id).all()
        # one member's accuracy is NaN at step 300, another never recorded step 500: both are left out there
        crud.upsert_metrics(session, run_id=runs[1].id, rows=[(ACC, 300, math.nan)])
        session.execute(delete(Metric).where(Metric.run_id == runs[2].id, Metric.key == ACC, Metric.step == 500))
        ids = [run.id for run in runs]
    with session_scope(engine, readonly=True) as session:
        data = P.seed_set(session, sweep_id=sweep_id)
        rows = {run_id: dict((step, value) for _k, step, value in crud.get_metrics(session, run_id=run_id, keys=[ACC]))
                for run_id in ids}
        iteration = {run_id: dict((s, v) for _k, s, v in crud.get_metrics(
            session, run_id=run_id, keys=[score_key("iteration", "peaky_thres", 1, 0)])) for run_id in ids}
    accuracy = data["curves"]["accuracy"]
    assert accuracy["steps"] == STEPS and data["seeds"] == 6
    for j, step in enumerate(STEPS):
        column = [rows[run_id][step] for run_id in ids if step in rows[run_id]]
        expected = numpy_stats(column)
        assert accuracy["n"][j] == expected["n"]
        for name in P.BAND_STATS:
            assert accuracy[name][j] == pytest.approx(expected[name], abs=1e-9), (name, step)
    assert accuracy["n"][STEPS.index(300)] == 5 and accuracy["n"][STEPS.index(500)] == 5
    band = data["curves"]["iteration/peaky_thres"]  # every member's circuit head is L1H0 (the synthetic rows)
    assert band["max"] == pytest.approx([max(iteration[r][s] for r in ids) for s in STEPS])
    assert set(data["curves"]) == {"accuracy", *(f"{r}/{s}" for r in ("eoi_locator", "iteration")
                                                for s in ("peaky_thres", "peaky_abs"))}


def test_emergence_and_the_seeds_table_put_the_seeds_without_a_circuit_last(engine):
    never = {2, 5}
    with session_scope(engine) as session:
        sweep_id = seed_set_rows(session, seeds=range(6), steps=STEPS,
                                 midpoint=lambda seed: None if seed in never else 200 + 50 * seed)
    with session_scope(engine, readonly=True) as session:
        data = P.seed_set(session, sweep_id=sweep_id)
    members = data["members"]
    assert [m["seed"] for m in members[-2:]] == sorted(never) and all(m["formed"] == "none" for m in members[-2:])
    assert all(m["formed"] == "clear" for m in members[:4]) and data["formed"] == {"clear": 4, "none": 2}
    emerged = [m["heads"]["iteration"]["emerged_step"] for m in members[:4]]
    assert data["emergence"]["iteration"]["steps"] == sorted(emerged) and data["emergence"]["iteration"]["never"] == 2
    assert data["emergence"]["iteration"]["median"] == pytest.approx(float(np.median(emerged)))
    assert all(m["heads"]["iteration"]["label"] == "L1H0" for m in members[:4]) and all(m["verdict"] for m in members)
    accuracies = [m["accuracy"] for m in members[:4]]
    assert accuracies == sorted(accuracies, reverse=True)


def test_compare_sets_counts_steps_to_099_and_their_ratio(engine):
    with session_scope(engine) as session:
        slow = seed_set_rows(session, seeds=range(5), steps=list(range(0, 10001, 100)), name="scratch",
                             midpoint=lambda seed: 5000 + 100 * seed, width=100)
        fast = seed_set_rows(session, seeds=range(5), steps=list(range(0, 10001, 100)), name="fine-tuned",
                             midpoint=lambda seed: 500 + 10 * seed if seed < 4 else None, width=10)
    with session_scope(engine, readonly=True) as session:
        data = P.compare_sets(session, sweep_ids=[slow, fast])
        per_seed = []
        for sweep_id in (slow, fast):
            steps = []
            for run in session.query(Run).filter(Run.sweep_id == sweep_id):
                series = dict((s, v) for _k, s, v in crud.get_metrics(session, run_id=run.id, keys=[ACC]))
                steps.append(next((s for s in sorted(series) if series[s] >= 0.99), None))
            per_seed.append(steps)
    scratch, tuned = (s["steps_to_threshold"] for s in data["sets"])
    assert scratch["median"] == float(np.median(per_seed[0])) and scratch["never"] == 0
    reached = [s for s in per_seed[1] if s is not None]
    assert tuned["median"] == float(np.median(reached)) and tuned["never"] == 1 and tuned["n"] == 4
    assert data["ratios"][0] == 1.0 and data["ratios"][1] == pytest.approx(scratch["median"] / tuned["median"])
    assert data["ratios"][1] > 8  # the fine-tuned set needs about ten times fewer steps
    with pytest.raises(SpecError) as error, session_scope(engine, readonly=True) as session:
        P.compare_sets(session, sweep_ids=[slow, slow])
    assert error.value.errors[0][0] == "sets"


def test_a_grid_at_a_step_reads_each_runs_latest_value_at_or_before_it(engine):
    with session_scope(engine) as session:
        grid = grid_rows(session, axes={"d_model": [16, 32], "max_len": [3, 4]}, seeds=[0, 1], steps=[0, 50, 100])
        runs = session.query(Run).filter(Run.sweep_id == grid).order_by(Run.id).all()
        session.execute(delete(Metric).where(Metric.run_id == runs[0].id, Metric.step == 50))  # falls back to 0
        ids = [run.id for run in runs]
    with session_scope(engine, readonly=True) as session:
        assert P.snapshot_steps(session, sweep_id=grid) == [0, 50, 100]
        members = {m["id"]: m for m in P.grid_members(session, sweep_id=grid, score="peaky_abs")}
        summaries = {run_id: session.get(Run, run_id).summary for run_id in ids}
        at = P.grid_at(session, sweep_id=grid, step=60, score="peaky_abs")
        exact = P.grid_at(session, sweep_id=grid, step=50, score="peaky_abs")  # runs[0] lacks step 50: falls back
        expected = {}
        for run_id in ids:
            series = {key: dict((s, v) for _k, s, v in crud.get_metrics(session, run_id=run_id, keys=[key]))
                      for key in (ACC, score_key("iteration", "peaky_abs", 1, 0))}
            expected[run_id] = [series[key][max(s for s in series[key] if s <= 60)] for key in series]
    assert set(at) == set(ids) and set(members) == set(ids)
    assert exact[ids[0]] == at[ids[0]] and exact[ids[1]] == at[ids[1]]  # step 50 is each one's latest <= 60
    for run_id in ids:  # the numbers the database extracted from each summary are the summary's
        summary = summaries[run_id]
        assert members[run_id]["final"]["test_seq_acc"] == summary["accuracy"]["test"]["seq_acc"]
        assert members[run_id]["final"]["iteration"] == summary["heads"]["iteration"]["scores"]["peaky_abs"]
        assert members[run_id]["heads"]["eoi_locator"] == (summary["heads"]["eoi_locator"]["layer"],
                                                          summary["heads"]["eoi_locator"]["head"])
    for run_id in ids:
        assert [at[run_id]["test_seq_acc"], at[run_id]["iteration"]] == pytest.approx(expected[run_id])
    assert at[ids[0]]["test_seq_acc"] == expected[ids[0]][0] and at[ids[1]]["test_seq_acc"] != at[ids[0]]["test_seq_acc"]
    P.check_step(100, [0, 50, 100])
    with pytest.raises(SpecError) as error:
        P.check_step(101, [0, 50, 100])
    assert error.value.errors == [("step", "step 101 is beyond the last snapshot (step 100)")]
    with pytest.raises(SpecError, match="no run of this sweep has a snapshot"):
        P.check_step(0, [])


def test_bad_seed_sets_are_clear_errors(engine):
    with session_scope(engine) as session:
        empty = Sweep(name="empty", spec={}, axes={"seed": [0, 1]})
        grid = Sweep(name="grid", spec={}, axes={"d_model": [16, 32], "seed": [0]})
        session.add_all([empty, grid])
        session.flush()
        empty_id, grid_id = empty.id, grid.id
    with session_scope(engine, readonly=True) as session:
        with pytest.raises(SpecError) as error:
            P.seed_set(session, sweep_id=empty_id)
        assert error.value.errors == [("sweep_id", f"seed set {empty_id} has no runs yet "
                                                   "(its sweep job has not expanded it)")]
        with pytest.raises(SpecError, match="varies d_model, not only the seed"):
            P.seed_set(session, sweep_id=grid_id)
        with pytest.raises(SweepError):
            P.seed_set(session, sweep_id=2**31 - 1)


def test_the_sweeps_index_counts_cells_and_statuses(engine):
    with session_scope(engine) as session:
        seeds = seed_set_rows(session, seeds=range(3), steps=[0, 10])
        grid = grid_rows(session, axes={"d_model": [16, 32], "max_len": [3]}, seeds=[0], steps=[0, 10])
        first = session.query(Run).filter(Run.sweep_id == seeds).order_by(Run.id).first()
        crud.update_run(session, run_id=first.id, status=Status.RUNNING)
    with session_scope(engine, readonly=True) as session:
        rows = {row["id"]: row for row in P.list_sweeps(session)}
        only = P.list_sweeps(session, sweep_ids=[grid])
    assert rows[seeds]["kind"] == "seed set" and rows[seeds]["cells"] == 3 and rows[seeds]["runs"] == 3
    assert rows[seeds]["status"]["RUNNING"] == 1 and rows[seeds]["status"]["SUCCEEDED"] == 2
    assert rows[grid]["kind"] == "grid" and rows[grid]["cells"] == 2 and rows[grid]["status"]["QUEUED"] == 0
    assert [row["id"] for row in only] == [grid]


def test_spread_is_numpy_on_any_list():
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 4, 7, 100):
        values = list(rng.normal(size=size))
        got = P.spread([*values, None, math.nan])
        expected = numpy_stats(values)
        assert got["n"] == size and all(got[name] == pytest.approx(expected[name]) for name in P.STATS)
