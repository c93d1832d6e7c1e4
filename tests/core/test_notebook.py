"""The notebook API on a real database: one tiny run trained into a temp SQLite file, read back.

Every figure the client returns is checked against a second path to it: metrics against the rows
``core.db.crud`` reads, snapshots against ``core.snapshots.unpack`` of the stored blob and against
the attention the loaded checkpoint computes, the TransformerLens model against ours, intervention
results against the rows the job stored. ``build_database`` is reused by the live-server test
(tests/server/test_notebook_http.py), which holds the server's figures to these.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.causal import results
from core.db import crud, jobs
from core.db.session import make_engine, session_scope, upgrade
from core.names import ROLES
from core.notebook import NotebookError
from core.notebook import open as cb_open
from core.problems import expected_keys
from core.snapshots import real_width, token_label, unpack
from core.specs.run import RunSpec
from core.submit import submit_run
from tests.server.conftest import FAST

ROOT = Path(__file__).resolve().parents[2]
EDGE = {"kind": "edge", "heads": ["L1H0"], "variants": ["raw"], "rows_per_len": 4, "steps": "all"}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def build_database(folder: Path) -> dict:
    """``folder/circuitboard.db``: run "trained" (FAST, preset fast-parity, trained, with an edge
    intervention at every snapshot step) and run "waiting" (QUEUED, preset other)."""
    torch = pytest.importorskip("torch")
    from core.causal.jobs import execute_intervention_job
    from core.recording import execute_training

    url = f"sqlite:///{folder / 'circuitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with session_scope(engine) as session:
            trained = submit_run(session, spec=RunSpec.from_flat(FAST), name="trained", preset="fast-parity",
                                 tags=["nb", "done"]).run_id
            waiting = submit_run(session, spec=RunSpec.from_flat({**FAST, "seed": 1}), name="waiting",
                                 preset="other", tags=["nb"], notes="not trained").run_id
        assert execute_training(engine, trained) == "SUCCEEDED"
        with session_scope(engine) as session:
            job_id = jobs.submit_intervention_job(session, run_id=trained, spec=EDGE).id
        assert execute_intervention_job(engine, job_id) == "SUCCEEDED"
    finally:
        torch.set_num_threads(threads)
        engine.dispose()
    return {"url": url, "trained": trained, "waiting": waiting, "job_id": job_id}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    return build_database(tmp_path_factory.mktemp("notebook"))


@pytest.fixture
def cb(built):
    with cb_open(built["url"]) as client:
        yield client


def stored(built, fn):
    engine = make_engine(built["url"])
    try:
        with session_scope(engine, readonly=True) as session:
            return fn(session)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- runs


def test_runs_filter_and_carry_spec_and_summary(cb, built):
    assert [r.id for r in cb.runs(tag="nb")] == [built["waiting"], built["trained"]]  # newest first
    (run,) = cb.runs(status="succeeded", preset="fast-parity")  # any case, as the API
    assert run.id == built["trained"] and run.name == "trained" and run.tags == ["nb", "done"]
    assert [r.id for r in cb.runs(preset="other")] == [built["waiting"]]
    assert cb.runs(text="NOT TRAINED")[0].id == built["waiting"]
    assert cb.runs(problem="polynomial") == []
    assert run.spec == RunSpec.from_flat(FAST).to_flat()
    assert run.snapshot_steps == [0, 10, 20] and run.checkpoint_steps[-1] == 20
    assert run.summary["verdict"] and 0.0 <= run.summary["accuracy"]["test"]["seq_acc"] <= 1.0
    assert run.finished_at >= run.started_at >= run.created_at
    with pytest.raises(NotebookError, match="status: 'DONE' is not one of QUEUED"):
        cb.runs(status="DONE")


def test_runs_as_a_dataframe(cb, built):
    frame = cb.runs(tag="nb").to_dataframe()
    assert list(frame.index) == [built["waiting"], built["trained"]]
    trained = cb.run(built["trained"])
    assert frame.loc[built["trained"], "d_model"] == FAST["d_model"] == 16
    assert frame.loc[built["trained"], "summary.accuracy.test.seq_acc"] == trained.summary["accuracy"]["test"]["seq_acc"]
    assert frame.loc[built["waiting"], "status"] == "QUEUED"


def test_dataframes_say_when_pandas_is_missing(cb, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(NotebookError, match="to_dataframe needs pandas: pip install pandas"):
        cb.runs().to_dataframe()


def test_bad_requests_name_what_was_asked(cb, built, tmp_path):
    with pytest.raises(NotebookError, match="no run 999"):
        cb.run(999)
    with pytest.raises(NotebookError, match="run_id: a positive integer"):
        cb.run("7")
    run = cb.run(built["trained"])
    with pytest.raises(NotebookError, match=r"step: run \d+ has no snapshot at step 7; snapshot steps: 0, 10, 20"):
        run.snapshot(7)
    with pytest.raises(NotebookError, match=r"probe: 99 is out of range: the probe set has 6 sequences \(0..5\)"):
        run.snapshot(10, probe=99)
    with pytest.raises(NotebookError, match="keys: run .* recorded no 'test/seq_ac'"):
        run.metrics(["train/loss", "test/seq_ac"])
    with pytest.raises(NotebookError, match="has no snapshot yet"):
        cb.run(built["waiting"]).snapshot()
    with pytest.raises(NotebookError, match="no database file at"):
        cb_open(tmp_path / "absent.db")
    with pytest.raises(NotebookError, match="only a server URL takes a token"):
        cb_open(built["url"], token="x")
    assert not (tmp_path / "absent.db").exists()  # nothing was created


# ---------------------------------------------------------------- metrics


def test_metrics_are_the_stored_rows_as_series(cb, built):
    run = cb.run(built["trained"])
    rows = stored(built, lambda s: crud.get_metrics(s, run_id=run.id))
    every = run.metrics()
    assert set(every) == {key for key, _, _ in rows} and len(every) > 50
    for key, step, value in rows:
        steps, values = every[key]
        (at,) = np.flatnonzero(steps == step)
        assert values[at] == value or (math.isnan(value) and math.isnan(values[at]))
    steps, loss = run.metrics("train/loss")["train/loss"]
    assert steps.dtype == np.int64 and loss.dtype == np.float64 and steps[-1] == 20 and np.all(loss > 0)
    assert set(run.metrics(prefix="score/iteration/peaky_thres/")) == {
        key for key in every if key.startswith("score/iteration/peaky_thres/")}


# ---------------------------------------------------------------- snapshots and checkpoints


def test_snapshot_is_the_stored_blob_with_labels(cb, built):
    run = cb.run(built["trained"])
    def read(session):
        row = crud.get_snapshot(session, run_id=run.id, step=10)
        return row.data, row.layout, crud.get_probe_set(session, run_id=run.id)[0]
    data, layout, tokens = stored(built, read)
    everything = unpack(data, layout)
    for probe, length in enumerate(layout["lengths"]):
        snap = run.snapshot(10, probe=probe)
        w = real_width(length)
        assert snap.attention.dtype == np.float32 and snap.attention.shape == (FAST.get("n_layers", 2), 1, w, w)
        assert np.array_equal(snap.attention, everything[probe, :, :, :w, :w])
        assert np.allclose(snap.attention.sum(-1), 1.0, atol=5e-3)  # rows are distributions (float16)
        assert not np.triu(snap.attention, k=1).any()  # causal: no key after its query
        assert snap.tokens == tokens[probe, :w].tolist() and snap.length == length
        assert snap.labels == [token_label(t, i, length) for i, t in enumerate(snap.tokens)]
        assert snap.labels[0] == "[parity]" and snap.labels[length + 1] == "EoI"
        for role in ROLES:
            assert all(np.array_equal(a, b) for a, b in zip(snap.expected[role], expected_keys(role, length)))
    assert run.snapshot().step == 20 and run.snapshot(probe=2).probe == 2


def test_the_checkpoint_computes_the_snapshot(cb, built):
    """The model loaded at a snapshot step attends as the stored snapshot says (float16 apart)."""
    torch = pytest.importorskip("torch")
    from core.ml.evaluate import attention_patterns

    run = cb.run(built["trained"])
    tokens = stored(built, lambda s: crud.get_probe_set(s, run_id=run.id)[0])
    for step in run.snapshot_steps:
        model = run.model(step)
        assert not model.training
        patterns = attention_patterns(model, tokens, device=torch.device("cpu"))
        for probe in range(len(tokens)):
            snap = run.snapshot(step, probe=probe)
            w = real_width(snap.length)
            assert np.allclose(patterns[probe, :, :, :w, :w], snap.attention, atol=1e-3), (step, probe)
    first, last = run.model(0).state_dict(), run.model().state_dict()
    assert any(not torch.equal(first[k], last[k]) for k in first)  # training moved the weights


def test_hooked_model_computes_what_ours_computes(cb, built):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformer_lens")
    run = cb.run(built["trained"])
    with pytest.raises(NotebookError, match="paper_norm_hooks=True"):  # FAST uses the paper's norm
        run.hooked_model()
    tokens = torch.from_numpy(stored(built, lambda s: crud.get_probe_set(s, run_id=run.id)[0]).astype(np.int64))
    with torch.no_grad():
        ours, theirs = run.model()(tokens), run.hooked_model(paper_norm_hooks=True)(tokens)
    assert torch.allclose(ours, theirs, atol=1e-5)


# ---------------------------------------------------------------- interventions


def test_interventions_are_the_stored_results(cb, built):
    run = cb.run(built["trained"])
    rows = stored(built, lambda s: results.list_results(s, run_id=run.id))
    found = run.interventions()
    (series,) = [s for s in found.series if s["intervention"] == "edge/iteration/raw"]
    assert series["target"] == "L1H0" and [p["step"] for p in series["points"]] == [0, 10, 20]
    for point in series["points"]:
        (row,) = [r for r in rows if r["step"] == point["step"] and r["intervention"] == "edge/iteration/raw"]
        assert point["mean"] == row["result"]["mean"] and point["baseline"] == row["result"]["baseline"]["mean"]
    assert found.steps == [0, 10, 20] and found.verdict["lines"]
    assert [j["id"] for j in found.jobs] == [built["job_id"]] and found.jobs[0]["spec"]["heads"] == ["L1H0"]
    frame = found.to_dataframe()
    assert len(frame) == len(rows) and list(frame.columns) == ["intervention", "target", "step", "mean", "baseline"]


# ---------------------------------------------------------------- the module itself, and its manual


def test_reading_metrics_loads_neither_torch_nor_pandas(built):
    code = (f"import sys; from core.notebook import open as o; r = o({built['url']!r}).run({built['trained']}); "
            "r.metrics('train/loss'); r.snapshot(); r.interventions(); "
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def manual_code() -> str:
    """The python blocks of docs/notebook.md's worked example, in order."""
    text = (ROOT / "docs" / "notebook.md").read_text()
    example = text.split("## Worked example", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```python\n(.*?)```", example, flags=re.S))


def test_the_manual_example_runs(built, monkeypatch, capsys):
    code = manual_code()
    assert "cb_open(" in code and "run.snapshot(" in code and "run.model(" in code  # not vacuous
    monkeypatch.chdir(Path(built["url"].removeprefix("sqlite:///")).parent)  # its circuitboard.db
    exec(compile(code, "docs/notebook.md", "exec"), {})
    assert "EoI" in capsys.readouterr().out
