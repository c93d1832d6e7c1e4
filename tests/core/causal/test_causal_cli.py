"""The causal commands: intervene (foreground, as a claimed job), export, import-eval; bad input exits 2."""

from __future__ import annotations

from core.cli import main
from core.db.session import session_scope
from tests.core.test_eval_import import eval_csv


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_intervene_export_and_import(trained, tmp_path, capsys):
    engine, run_id = trained
    db = engine.url.render_as_string(hide_password=False)
    assert run_cli("intervene", str(run_id), "--kind", "ablate", "--variant", "zero", "--head", "L0H*",
                   "--rows-per-len", "4", "--db", db) == 0
    out = capsys.readouterr().out
    assert "ablate/zero" in out and "L0H*" in out and "accuracy" in out
    with session_scope(engine, readonly=True) as session:
        (job,) = [j for j in crud_jobs(session) if j.payload["spec"]["heads"] == ["L0H*"]]
        assert job.status == "SUCCEEDED"
    assert run_cli("intervene", str(run_id), "--kind", "edge", "--variant", "nope", "--db", db) == 2
    assert "variants" in capsys.readouterr().err
    assert run_cli("export", str(run_id), "--format", "safetensors", "--out", str(tmp_path / "st"), "--db", db) == 0
    assert (tmp_path / "st" / "model.safetensors").exists()
    assert run_cli("export", str(run_id), "--format", "tl", "--out", str(tmp_path / "tl"), "--db", db) == 2
    assert "norm='paper'" in capsys.readouterr().err
    (tmp_path / "eval.csv").write_text(eval_csv({0: 0.0, 10: 0.9}))
    assert run_cli("import-eval", str(tmp_path / "eval.csv"), "--db", db) == 0
    assert "at 2 steps" in capsys.readouterr().out


def crud_jobs(session):
    from sqlalchemy import select

    from core.db.models import Job

    return session.scalars(select(Job).where(Job.kind == "intervene")).all()
