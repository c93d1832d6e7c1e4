"""Intervention jobs against a stored run: one row per (step, intervention, target), guarded, resumable."""

from __future__ import annotations

import pytest

from core.causal import results
from core.causal.jobs import InterventionError, Outcome, execute_intervention_job
from core.db import crud
from core.db.session import session_scope
from tests.core.causal.conftest import submit


def stored(engine, run_id, **filters):
    with session_scope(engine, readonly=True) as session:
        return results.list_results(session, run_id=run_id, **filters)


def test_ablation_over_every_step_writes_one_row_per_step_variant_and_head(trained):
    engine, run_id = trained
    calls = []
    job_id = submit(engine, run_id, {"kind": "ablate", "steps": "all", "rows_per_len": 8})
    assert execute_intervention_job(engine, job_id, guard=calls.append) == "SUCCEEDED"
    rows = stored(engine, run_id)
    ablations = [r for r in rows if r["intervention"].startswith("ablate/")]
    assert {r["step"] for r in ablations} == {0, 6, 12}
    assert {r["intervention"] for r in ablations} == {"ablate/zero", "ablate/mean", "ablate/resample"}
    with session_scope(engine, readonly=True) as session:
        heads = {(h["layer"], h["head"]) for h in crud.get_run(session, run_id=run_id).summary["heads"].values()}
    assert len(ablations) == 3 * 3 * len(heads)  # steps x variants x circuit heads (the best per role)
    assert len(calls) == len(ablations)  # the guard ran once per write, inside its transaction
    row = ablations[0]
    assert set(row["result"]["accuracy_by_length"]) == {"1", "2", "3", "4"}
    assert 0.0 <= row["result"]["mean"] <= 1.0 and "mean" in row["result"]["baseline"]
    assert row["job_id"] == job_id and row["spec"]["kind"] == "ablate"


def test_own_pattern_and_retry(trained):
    """Patching a head with its own run's pattern at the same step is the identity: accuracy = baseline."""
    engine, run_id = trained
    spec = {"kind": "pattern", "variants": ["run", "ideal"], "heads": ["L1H0", "L0H*"], "source_run": run_id,
            "source_step": 12, "steps": 12, "rows_per_len": 8}
    job_id = submit(engine, run_id, spec)
    assert execute_intervention_job(engine, job_id) == "SUCCEEDED"
    rows = {(r["intervention"], r["target"]): r["result"] for r in stored(engine, run_id, step=12)}
    own = rows[("pattern/run" + f"{run_id}@12", "L1H0")]
    assert own["accuracy_by_length"] == own["baseline"]["accuracy_by_length"]
    assert ("pattern/ideal", "L0H*") in rows
    before = stored(engine, run_id)
    assert execute_intervention_job(engine, job_id) == "SUCCEEDED"  # the same job again: all done, skipped
    assert [r["created_at"] for r in stored(engine, run_id)] == [r["created_at"] for r in before]


def test_a_new_job_recomputes_what_an_older_job_stored_under_the_same_key(trained):
    """Only a job's own results are skipped: another job on the same key may ask for other rows."""
    engine, run_id = trained
    spec = {"kind": "ablate", "variants": ["zero"], "heads": ["L1H0"], "steps": 12}
    first = submit(engine, run_id, {**spec, "rows_per_len": 2})
    execute_intervention_job(engine, first)
    (row,) = [r for r in stored(engine, run_id, step=12, intervention="ablate/zero") if r["target"] == "L1H0"]
    assert (row["job_id"], row["spec"]["rows_per_len"], row["result"]["rows_per_len"]) == (first, 2, 2)
    second = submit(engine, run_id, {**spec, "rows_per_len": 5})
    assert execute_intervention_job(engine, second) == "SUCCEEDED"
    (row,) = [r for r in stored(engine, run_id, step=12, intervention="ablate/zero") if r["target"] == "L1H0"]
    # replaced, not added: one row per key
    assert (row["job_id"], row["spec"]["rows_per_len"], row["result"]["rows_per_len"]) == (second, 5, 5)


def test_the_workers_device_applies_when_the_run_names_none(trained):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA to see the request refused")
    from core.ml.train import TrainingError

    engine, run_id = trained
    job_id = submit(engine, run_id, {"kind": "edge", "variants": ["raw"], "heads": ["L1H0"], "steps": 6,
                                     "rows_per_len": 2})
    with pytest.raises(TrainingError, match="'cuda:0' requested but CUDA is not available"):
        execute_intervention_job(engine, job_id, device="cuda:0")


def test_a_guard_that_refuses_writes_nothing_and_stop_hands_back(trained):
    engine, run_id = trained
    spec = {"kind": "edge", "heads": ["L1H1"], "steps": 6, "rows_per_len": 4}

    def lost(session):
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        execute_intervention_job(engine, submit(engine, run_id, spec), guard=lost)
    assert not stored(engine, run_id, intervention="edge/iteration/raw")
    assert execute_intervention_job(engine, submit(engine, run_id, spec), should_stop=lambda: True) is Outcome.STOPPED
    assert execute_intervention_job(engine, submit(engine, run_id, spec)) == "SUCCEEDED"
    assert {r["intervention"] for r in stored(engine, run_id, step=6) if r["target"] == "L1H1"} == \
        {"edge/iteration/renorm", "edge/iteration/raw"}


def test_patching_and_probes_store_their_figures(trained):
    engine, run_id = trained
    spec = {"kind": "activation_patch", "variants": ["resid_pre"], "metric": "accuracy", "length": 3, "rows_per_len": 8}
    execute_intervention_job(engine, submit(engine, run_id, spec))
    (row,) = stored(engine, run_id, intervention="patch/resid_pre/accuracy")
    assert row["target"] == "len3" and len(row["result"]["grid"]) == 2 and len(row["result"]["grid"][0]) == 8
    execute_intervention_job(engine, submit(engine, run_id, {"kind": "probe", "variants": ["t"], "layer": 1}))
    (row,) = stored(engine, run_id, intervention="probe/t")
    assert row["target"] == "blocks.1.hook_resid_mid" and 0.0 <= row["result"]["accuracy"] <= 1.0


def test_missing_steps_are_refused(trained):
    engine, run_id = trained
    with pytest.raises(InterventionError, match="no weights checkpoint at step 7"):
        execute_intervention_job(engine, submit(engine, run_id, {"kind": "ablate", "steps": 7}))


def test_a_run_trained_on_cuda_is_analysed_on_the_cpu_where_there_is_none(trained):
    """Inline (no worker device) on a machine without CUDA, the run's own ``device: cuda`` falls back to cpu."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    engine, run_id = trained
    with session_scope(engine) as session:
        flat = dict(crud.get_run(session, run_id=run_id).spec)
        crud.update_run(session, run_id=run_id, spec={**flat, "device": "cuda"})
    try:
        job_id = submit(engine, run_id, {"kind": "edge", "variants": ["raw"], "heads": ["L1H0"], "steps": 0,
                                         "rows_per_len": 2})
        assert execute_intervention_job(engine, job_id) == "SUCCEEDED"
        assert [r for r in stored(engine, run_id, step=0) if r["job_id"] == job_id]
    finally:
        with session_scope(engine) as session:
            crud.update_run(session, run_id=run_id, spec=flat)


def test_progress_counts_results_and_an_attempt_starts_from_what_is_stored(trained):
    engine, run_id = trained
    job_id = submit(engine, run_id, {"kind": "edge", "heads": ["L0H0", "L1H0"], "steps": "all", "rows_per_len": 8})
    seen = []
    assert execute_intervention_job(engine, job_id, on_progress=seen.append) == "SUCCEEDED"
    total = 3 * 2 * 2  # steps 0, 6, 12 x renorm/raw x two heads
    assert [p["done"] for p in seen] == list(range(total + 1))
    assert {p["total"] for p in seen} == {total}
    assert seen[0]["eta_s"] is None and seen[-1]["eta_s"] == 0
    assert len([r for r in stored(engine, run_id) if r["job_id"] == job_id]) == total
    again = []
    execute_intervention_job(engine, job_id, on_progress=again.append)  # a retry: everything is stored
    assert again == [{"done": 0, "total": total, "eta_s": None}, {"done": total, "total": total, "eta_s": None}]
