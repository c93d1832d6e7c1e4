"""A tiny trained run in a SQLite database, shared by the causal tests of one module."""

from __future__ import annotations

import pytest

from core.db import crud, jobs
from core.db.session import make_engine, session_scope, upgrade
from core.specs.run import RunSpec

TINY_RUN = {
    "problem": "parity", "max_len": 4, "n_train_per_len": 32, "n_test_per_len": 16, "probe_per_len": 2,
    "n_heads": 2, "d_model": 16, "dropout": 0.0, "shuffle": True, "lr": 1e-2, "batch_size": 16, "steps": 12,
    "eval_every": 6, "snapshot_every": 6, "checkpoint_every": 6, "eval_generate": False,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(engine, run_id) of a finished tiny run with weights checkpoints at steps 0, 6 and 12."""
    pytest.importorskip("torch")
    import torch

    from core.recording import execute_training

    torch.set_num_threads(1)
    url = f"sqlite:///{tmp_path_factory.mktemp('causal') / 'circuitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        run_id = crud.create_run(session, spec=RunSpec.from_flat(TINY_RUN).to_flat(), name="tiny").id
    execute_training(engine, run_id)
    yield engine, run_id
    engine.dispose()


def submit(engine, run_id: int, spec: dict) -> int:
    """An intervene job on the run."""
    with session_scope(engine) as session:
        return jobs.submit_intervention_job(session, run_id=run_id, spec=spec).id
