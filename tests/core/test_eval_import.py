"""The authors' eval.csv becomes our metrics: accuracy by length and the two heads' scores, epochs as steps."""

from __future__ import annotations

import pytest

from core.db import crud
from core.db.session import session_scope
from core.eval_import import EvalCsvError, import_eval_csv, parse
from core.summary import summarize

LENGTHS = range(1, 6)


def eval_csv(rows: dict[int, float]) -> str:
    """An eval.csv as FullEval writes it (lengths 1..5): {epoch: a value every column takes}."""
    names = [f"acc_len_{n}" for n in LENGTHS] + ["boi", "eoi", "eos"]
    for n in LENGTHS:
        names += [f"attn0_inv_{n}", f"attn1_inv_{n}", f"attn0_peaky_abs_{n}", f"attn0_peaky_thres_{n}",
                  f"attn1_peaky_abs_{n}", f"attn1_peaky_thres_{n}"]
    header = ["timestamp"] + [f"{n}_train" for n in names] + [f"{n}_test" for n in names]
    lines = [",".join(header)]
    for epoch, value in rows.items():
        values = [value] * (len(header) - 1)
        values[header.index("acc_len_1_test") - 1] = 0.0  # L = 1 is outside the paper's mean (4..max)
        lines.append(",".join([str(epoch)] + [str(v) for v in values]))
    return "\n".join(lines) + "\n"


def test_parse_maps_columns_and_epochs():
    imported = parse(eval_csv({0: 0.0, 10: 0.95}))
    assert imported.steps == [0, 640]
    values = {(key, step): value for key, step, value in imported.rows}
    assert values[("test/seq_acc/L5", 640)] == 0.95 and values[("test/seq_acc/L1", 640)] == 0.0
    assert values[("test/seq_acc", 640)] == 0.95  # mean over L = 4..5 only
    assert values[("score/iteration/peaky_thres/L1H0/len3", 640)] == 0.95
    assert values[("score/eoi_locator/inv/L0H0", 640)] == 0.95
    assert sorted(imported.ignored) == sorted(f"{g}_{s}" for g in ("boi", "eoi", "eos") for s in ("train", "test"))


def test_bad_files_are_refused():
    with pytest.raises(EvalCsvError, match="timestamp"):
        parse("epoch,acc_len_1_train\n0,1\n")
    with pytest.raises(EvalCsvError, match="line 2"):
        parse("timestamp,acc_len_1_train\n0,1,2\n")


def test_import_into_a_run_reads_like_a_trained_one(sqlite_engine):
    with session_scope(sqlite_engine) as session:
        run_id = crud.create_run(session, spec={"problem": "polynomial"}, name="authors").id
        import_eval_csv(session, run_id=run_id, text=eval_csv({0: 0.0, 10: 0.5, 20: 0.97}))
        summary = summarize(crud.get_metrics(session, run_id=run_id))
        with pytest.raises(crud.RunNotFound):
            import_eval_csv(session, run_id=run_id + 1, text=eval_csv({0: 0.0}))
    assert summary["accuracy"]["test"]["seq_acc"] == 0.97 and summary["accuracy"]["test"]["step"] == 1280
    assert summary["heads"]["iteration"]["label"] == "L1H0" and summary["heads"]["iteration"]["emerged_step"] == 1280
