"""A run's summary from hand-made metric rows: accuracy, the circuit head per role, emergence, verdict."""

from __future__ import annotations

import json
import math

import pytest

from core.summary import EMERGED, grade, summarize, verdict


def series(key, values):
    """{step: value} -> rows."""
    return [(key, step, value) for step, value in values.items()]


def base_rows():
    rows = []
    # iteration role: L1H0 emerges at step 3,200 (first value >= 0.9), L0H0 stays low
    rows += series("score/iteration/peaky_thres/L1H0", {0: 0.0, 1600: 0.5, 3200: 0.93, 4800: 0.97})
    rows += series("score/iteration/peaky_thres/L0H0", {0: 0.1, 1600: 0.2, 3200: 0.2, 4800: 0.3})
    rows += series("score/iteration/peaky_abs/L1H0", {0: 0.1, 4800: 0.81})
    rows += series("score/iteration/inv/L1H0", {4800: 0.88})
    rows += series("score/iteration/mul/L1H0", {4800: 0.4})
    # a per-length key with a higher value must not be taken for the averaged one
    rows += series("score/iteration/peaky_thres/L0H0/len7", {4800: 1.0})
    # eoi locator: the best head is in layer 1, not where the theory expects it
    rows += series("score/eoi_locator/peaky_thres/L0H0", {0: 0.0, 4800: 0.6})
    rows += series("score/eoi_locator/peaky_thres/L1H0", {0: 0.0, 1600: 0.9, 3200: 0.85, 4800: 0.95})
    # accuracy
    rows += series("test/seq_acc", {0: 0.0, 4800: 0.75})
    rows += series("train/seq_acc", {0: 0.0, 4800: 0.8})
    rows += series("test/seq_acc/L4", {0: 0.0, 4800: 0.5})
    rows += series("test/seq_acc/L10", {4800: 0.25})
    rows += series("test/gen_acc", {4800: 0.7})
    rows += series("train/loss", {1: 4.0, 4800: 0.1})
    return rows


def test_the_best_head_per_role_and_its_emergence_step():
    summary = summarize(base_rows())
    it = summary["heads"]["iteration"]
    assert (it["layer"], it["head"], it["label"]) == (1, 0, "L1H0")
    assert it["expected_layer"] == 1
    assert it["emerged_step"] == 3200
    assert it["scores"] == {"peaky_abs": 0.81, "peaky_thres": 0.97, "inv": 0.88, "mul": 0.4}
    assert "stronger_elsewhere" not in it
    # the EoI locator is layer 0's best head, though a layer-1 head attends to EoI more
    eoi = summary["heads"]["eoi_locator"]
    assert eoi["label"] == "L0H0" and eoi["expected_layer"] == 0
    assert eoi["emerged_step"] is None
    assert eoi["stronger_elsewhere"] == {"label": "L1H0", "peaky_thres": 0.95}


def test_without_the_theorys_layer_the_best_head_anywhere_is_taken():
    rows = series("score/eoi_locator/peaky_thres/L0H0", {0: 0.0, 100: 0.2})
    rows += series("score/eoi_locator/peaky_thres/L0H1", {0: 0.0, 100: 0.92})
    rows += series("score/iteration/peaky_thres/L0H0", {0: 0.0, 100: 0.95})  # a 1-layer model
    summary = summarize(rows)
    assert summary["heads"]["iteration"]["label"] == "L0H0"
    assert summary["heads"]["eoi_locator"]["label"] == "L0H1"
    assert summary["heads"]["eoi_locator"]["emerged_step"] == 100  # the first step at >= 0.9
    assert "iteration head at L0H0 from step 100 (not the layer the theory expects)" in summary["verdict"]


def test_accuracy_takes_the_last_values():
    acc = summarize(base_rows())["accuracy"]
    assert acc["test"]["seq_acc"] == 0.75 and acc["test"]["step"] == 4800
    assert acc["test"]["seq_acc_by_length"] == {"4": 0.5, "10": 0.25}  # JSON keys, as stored
    assert list(acc["test"]["seq_acc_by_length"]) == ["4", "10"]  # ordered by length, not as text
    assert acc["test"]["gen_acc"] == 0.7
    assert acc["train"]["seq_acc"] == 0.8


def test_the_verdict_names_the_head_and_the_step():
    text = summarize(base_rows())["verdict"]
    assert "iteration head at L1H0 from step 3,200" in text
    assert ("partial EoI locator so far at L0H0 (peaky_thres 0.60 against the 0.90 bar), "
            "though L1H0 outside layer 0 scores 0.95") in text
    assert "test accuracy 0.75" in text
    parts = text.split("; ")
    assert parts[1] == "iteration head at L1H0 from step 3,200"  # layer 1 is where the theory expects it


def test_no_circuit_yet():
    rows = series("score/iteration/peaky_thres/L1H0", {0: 0.1, 100: 0.42})
    rows += series("score/iteration/peaky_thres/L0H0", {0: 0.1, 100: 0.3})
    summary = summarize(rows)
    assert summary["heads"]["iteration"]["emerged_step"] is None
    assert "no iteration head yet (best L1H0, peaky_thres 0.42 against the 0.90 bar)" in summary["verdict"]
    assert summary["heads"]["iteration"]["grade"] == "none"
    assert "eoi_locator" not in summary["heads"]
    assert summary["accuracy"]["test"]["seq_acc"] is None


def test_emerged_once_but_fell_below_is_not_claimed():
    rows = series("score/iteration/peaky_thres/L1H0", {0: 0.1, 100: 0.95, 200: 0.6})
    summary = summarize(rows)
    assert summary["heads"]["iteration"]["emerged_step"] == 100
    assert "partial iteration head so far at L1H0 (peaky_thres 0.60 against the 0.90 bar)" in summary["verdict"]
    assert summary["heads"]["iteration"]["grade"] == "partial"


def test_threshold_is_inclusive_and_ordering_of_rows_does_not_matter():
    rows = series("score/iteration/peaky_thres/L1H0", {300: 0.95, 0: 0.1, 200: EMERGED, 100: 0.89})
    summary = summarize(list(reversed(rows)))
    assert summary["heads"]["iteration"]["emerged_step"] == 200


def test_nan_scores_do_not_win_and_the_summary_is_json_ready():
    rows = series("score/iteration/peaky_thres/L1H0", {0: 0.1, 100: math.nan})
    rows += series("score/iteration/peaky_thres/L0H1", {0: 0.1, 100: 0.2})
    summary = summarize(rows)
    assert summary["heads"]["iteration"]["label"] == "L0H1"
    json.dumps(summary, allow_nan=False)


def test_empty_rows():
    summary = summarize([])
    assert summary["heads"] == {}
    assert summary["verdict"] == ""
    assert verdict({}, {}) == ""


@pytest.mark.parametrize("step,text", [(0, "step 0"), (64_000, "step 64,000")])
def test_step_formatting(step, text):
    rows = series("score/iteration/peaky_thres/L1H0", {step: 1.0})
    assert text in summarize(rows)["verdict"]


# ---------------------------------------------------------------- causal verdict

from core.summary import causal_verdict  # noqa: E402


def evaluation(intervention, target, step, before, after):
    return {"intervention": intervention, "target": target, "step": step,
            "result": {"mean": after, "baseline": {"mean": before}}}


def test_causal_verdict_joins_scores_and_the_latest_interventions():
    summary = summarize(base_rows())
    results = [
        evaluation("edge/iteration/renorm", "L1H0", 1600, 0.5, 0.4),  # older: replaced by the step-4800 one
        evaluation("edge/iteration/renorm", "L1H0", 4800, 0.99, 0.09),
        evaluation("ablate/zero", "L1H*", 4800, 0.99, 0.98),
        evaluation("pattern/ideal", "L0H0+L1H0", 4800, 0.99, 1.0),
        evaluation("ablate/zero", "L1H1", 4800, 0.99, 0.0),  # not a circuit head: no line of its own
        {"intervention": "probe/t", "target": "blocks.1.hook_resid_mid", "step": 4800, "result": {"accuracy": 0.9}},
    ]
    out = causal_verdict(summary, results)
    iteration = next(line["text"] for line in out["lines"] if line["role"] == "iteration")
    assert iteration == ("iteration head L1H0: peaky_thres 0.97; "
                         "zeroing its iteration edge (renormalised) drops accuracy 0.99 -> 0.09 (step 4,800); "
                         "zero-ablating every layer-1 head keeps accuracy 0.98 (step 4,800)")
    assert "L0H0+L1H0: patching their ideal maps keeps accuracy 1.00 (step 4,800)" in out["text"]
    assert "L1H1" not in out["text"] and "probe" not in out["text"]


def test_causal_verdict_without_results_is_correlational_only():
    out = causal_verdict(summarize(base_rows()), [])
    assert [line["interventions"] for line in out["lines"]] == [[], []]
    assert "peaky_thres" in out["text"] and "accuracy" not in out["text"]


def test_run_summary_is_the_stored_one_else_derived_from_every_metric(sqlite_engine):
    """While a run trains it has no stored summary: the derived one has its accuracy as well as its heads."""
    from core.db import crud
    from core.db.session import session_scope
    from core.summary import run_summary

    with session_scope(sqlite_engine) as session:
        run = crud.create_run(session, spec={"problem": "parity"}, name="training")
        crud.upsert_metrics(session, run_id=run.id, rows=base_rows())
        derived = run_summary(session, run)
        assert derived == summarize(base_rows())
        assert derived["accuracy"]["test"]["seq_acc"] == 0.75 and "iteration" in derived["heads"]
        crud.update_run(session, run_id=run.id, summary={"verdict": "stored when it finished"})
        assert run_summary(session, run) == {"verdict": "stored when it finished"}


def test_every_phrase_names_a_label_the_intervention_kinds_give():
    from core.causal.kinds import KINDS
    from core.causal.specs import InterventionSpec
    from core.names import ROLES
    from core.summary import _PHRASES

    given = set()
    for name, kind in KINDS.items():
        if kind.on_heads:
            spec = InterventionSpec.parse({"kind": name, "variants": [v for v in kind.variants if v != "run"]})
            given |= {kind.label(spec, variant, role) for variant in kind.variants for role in (*ROLES, None)}
    assert set(_PHRASES) <= given


def test_a_finished_run_is_graded_without_yet():
    rows = series("score/iteration/peaky_thres/L1H3", {0: 0.1, 100: 0.87})
    rows += series("score/eoi_locator/peaky_thres/L0H3", {0: 0.1, 100: 0.34})
    rows += series("score/iteration/peaky_thres/L1H0", {0: 0.1, 100: 0.2})
    summary = summarize(rows, finished=True)
    text = summary["verdict"]
    assert "yet" not in text and "so far" not in text
    assert "partial iteration head at L1H3 (peaky_thres 0.87 against the 0.90 bar)" in text
    assert "no EoI locator (best L0H3, peaky_thres 0.34 against the 0.90 bar)" in text
    assert summary["heads"]["iteration"]["grade"] == "partial" and summary["heads"]["iteration"]["bar"] == 0.9
    assert summary["heads"]["eoi_locator"]["grade"] == "none"
    assert summarize(rows)["verdict"].count("yet") == 1  # the live run: the EoI locator is not there yet


@pytest.mark.parametrize(("score", "expected"), [(None, "none"), (0.49, "none"), (0.5, "partial"),
                                                 (0.899, "partial"), (0.9, "clear"), (1.0, "clear")])
def test_grades_follow_the_bars(score, expected):
    assert grade(score) == expected
