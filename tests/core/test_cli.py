"""The command line, run as a user runs it: a subprocess of ``python -m core.cli``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TINY = [
    "max_len=3", "n_train_per_len=16", "n_test_per_len=8", "probe_per_len=1", "d_model=8", "d_mlp=32",
    "steps=4", "batch_size=8", "warmup_steps=0", "eval_every=2", "snapshot_every=2", "checkpoint_every=2",
]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITBOARD_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def db(tmp_path) -> tuple[str, Path]:
    path = tmp_path / "x.db"
    return f"sqlite:///{path}", path


def test_unknown_preset_exits_2_with_one_line(db):
    url, path = db
    result = cli("train", "--preset", "nope", "--db", url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "nope" in lines[0] and "fast-polynomial" in lines[0]  # names the preset and the known ones
    assert result.stdout == ""
    assert not path.exists()


@pytest.mark.parametrize("override,field,bound", [
    ("d_model=65536", "d_model", "2048"),
    ("max_len=1000000", "max_len", "64"),
    ("lr=-1", "lr", "> 0"),
    ("foo=1", "foo", "unknown key"),
])
def test_out_of_bounds_values_exit_2_with_one_line_and_write_nothing(db, override, field, bound):
    url, path = db
    result = cli("train", "--preset", "fast-polynomial", "--set", override, "--db", url, "--threads", "1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{field}:" in lines[0] and bound in lines[0]
    assert not path.exists()
    assert not list(path.parent.glob("x.db*"))


def test_train_then_runs_then_show(db):
    url, path = db
    sets = [arg for item in TINY for arg in ("--set", item)]
    result = cli("train", "--preset", "fast-parity", *sets, "--name", "tiny-cli", "--threads", "1", "--db", url)
    assert result.returncode == 0, result.stderr
    assert path.exists()
    assert "SUCCEEDED" in result.stderr
    assert "[SUCCEEDED]" in result.stdout and "step 4/4" in result.stdout
    assert "verdict:" in result.stdout

    runs = cli("runs", "--db", url)
    assert runs.returncode == 0, runs.stderr
    rows = [line.split() for line in runs.stdout.strip().splitlines()[1:]]
    assert len(rows) == 1
    assert rows[0][:5] == ["1", "SUCCEEDED", "parity", "fast-parity", "4/4"]
    assert rows[0][-1] == "tiny-cli"

    show = cli("show", "1", "--json", "--db", url)
    assert show.returncode == 0, show.stderr
    record = json.loads(show.stdout)
    assert record["id"] == 1 and record["status"] == "SUCCEEDED" and record["name"] == "tiny-cli"
    assert record["step"] == record["total_steps"] == 4
    assert record["spec"]["d_model"] == 8 and record["spec"]["max_len"] == 3 and record["spec"]["problem"] == "parity"
    assert record["preset"] == "fast-parity"
    summary = record["summary"]
    assert set(summary["heads"]) == {"eoi_locator", "iteration"}
    assert summary["accuracy"]["test"]["step"] == 4
    assert sorted(summary["accuracy"]["test"]["seq_acc_by_length"]) == ["1", "2", "3"]
    assert summary["verdict"]

    missing = cli("show", "99", "--db", url)
    assert missing.returncode == 1
    assert "no run 99" in missing.stderr


def test_init_from_a_missing_run_is_bad_input(db):
    url, _ = db
    result = cli("train", "--preset", "fast-parity", "--set", "init_from=99@5", "--set", "steps=2",
                 "--set", "warmup_steps=0", "--threads", "1", "--db", url)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1 and "init_from" in lines[0] and "99" in lines[0]


def test_sweep_queues_the_grid_as_one_sweep_job(db):
    url, path = db
    result = cli("sweep", "--preset", "fast-parity", "--axis", "d_model=32,64", "--axis", "max_len=4,8",
                 "--seeds", "0,1", "--set", "steps=20", "--set", "warmup_steps=0", "--name", "grid", "--db", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sweep 1: 8 cells (d_model [32, 64] x max_len [4, 8] x seed [0, 1])")
    from core.db.models import Sweep
    from core.db.session import make_engine, session_scope
    from core.db import jobs

    engine = make_engine(url)
    with session_scope(engine, readonly=True) as session:
        sweep = session.get(Sweep, 1)
        assert (sweep.name, sweep.preset, sweep.spec["steps"]) == ("grid", "fast-parity", 20)
        assert [(job.kind, job.status) for job in jobs.list_jobs(session)] == [("sweep", "QUEUED")]
    engine.dispose()
    listing = cli("jobs", "--db", url)
    assert "sweep" in listing.stdout and "QUEUED" in listing.stdout


@pytest.mark.parametrize("args, line", [
    (["--axis", "d_model=32,4096"], "circuitboard sweep: axes.d_model: must be <= 2048 (got 4096)"),
    (["--axis", "d_model=32,x"], "circuitboard sweep: axes.d_model: values must be numbers (got 'x')"),
    (["--axis", "d_model"], "circuitboard sweep: axes.d_model: expected KEY=V1,V2,... (got 'd_model')"),
    (["--axis", "problem=1,2"], "circuitboard sweep: axes.problem: not a numeric key"),
    (["--axis", "d_model=32", "--seeds", "a,b"], "circuitboard sweep: seeds: expected seeds such as 0-99"),
    (["--seeds", "5-2"], "circuitboard sweep: seeds: the range 5-2 runs backwards"),
    (["--seeds", "0-9999"], "circuitboard sweep: seeds: at most 1000 seeds"),
    (["--seeds", "0-3", "--pack-size", "0"], "circuitboard sweep: pack-size: must be between 1 and 512 (got 0)"),
])
def test_a_bad_sweep_exits_2_naming_the_axis_and_writes_nothing(db, args, line):
    url, path = db
    result = cli("sweep", "--preset", "fast-parity", *args, "--db", url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[0].startswith(line), result.stderr
    assert not path.exists()


def test_worker_refuses_an_unknown_device(db):
    url, _ = db
    result = cli("worker", "--device", "tpu", "--db", url)
    assert result.returncode == 2
    assert "device: must be cpu, cuda or cuda:N (got 'tpu')" in result.stderr


@pytest.mark.parametrize("workers, preset, shared", [(2, None, True), (1, None, False), (3, "set-by-hand", True)])
def test_serve_with_several_workers_shares_one_secret_key(db, monkeypatch, workers, preset, shared):
    """uvicorn's worker processes each build the app: they must sign CSRF tokens and logins alike."""
    import argparse

    import uvicorn

    import core.db.session
    from core.cli import serve
    from core.settings import get_settings

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(key=os.environ.get("CIRCUITBOARD_SECRET_KEY"),
                                                                      workers=kw["workers"]))
    monkeypatch.setattr(core.db.session, "upgrade", lambda url: None)
    monkeypatch.setenv("CIRCUITBOARD_SECRET_KEY", "placeholder")  # so monkeypatch restores the variable
    if preset is None:
        monkeypatch.delenv("CIRCUITBOARD_SECRET_KEY")
    else:
        monkeypatch.setenv("CIRCUITBOARD_SECRET_KEY", preset)
    monkeypatch.setenv("CIRCUITBOARD_DATABASE_URL", db[0])  # cmd_serve sets it from --db; restored after
    monkeypatch.setattr("signal.signal", lambda *a: None)  # cmd_serve installs handlers for uvicorn's re-raise
    get_settings.cache_clear()
    try:
        args = argparse.Namespace(db=db[0], no_worker=True, host="127.0.0.1", port=0, workers=workers,
                                  local_workers=None)
        assert serve.cmd_serve(args) == 0
    finally:
        get_settings.cache_clear()
    assert seen["workers"] == workers
    if preset is not None:
        assert seen["key"] == preset  # a key set by hand is kept
    elif shared:
        assert seen["key"] and len(seen["key"]) >= 32  # drawn once here, inherited by every uvicorn worker
    else:
        assert seen["key"] is None  # one process: security.py's own random key is fine


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`circuitboard runs | head -1`: no BrokenPipeError traceback when the reader stops early."""
    import subprocess
    import sys

    db = f"sqlite:///{tmp_path / 'pipe.db'}"
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    code = ("import argparse, sys, core.cli\n"
            "def many(args):\n"  # a command whose output is far longer than the pipe's buffer
            "    for i in range(100000): print('run', i)\n"
            "    return 0\n"
            "parse = argparse.ArgumentParser.parse_args\n"
            "def parse_then_swap(self, *a, **k):\n"
            "    ns = parse(self, *a, **k); ns.fn = many; return ns\n"
            "argparse.ArgumentParser.parse_args = parse_then_swap\n"
            f"sys.exit(core.cli.main(['runs', '--db', {db!r}]))\n")
    shell = f"{sys.executable} -c {__import__('shlex').quote(code)} | head -1"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {shell}"], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.stdout == "run 0\n"
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141
