"""A run's summary: final accuracy by length, which head plays each circuit role, and since when.

Built from the metrics table alone (torch-free), so the CLI, the workers and the web pages all
derive the same summary from the same rows. For each role the *circuit head* is the head of the
layer the theory names (``EXPECTED_LAYER``: the EoI locator in layer 0, the iteration head in
layer 1) with the highest final ``peaky_thres`` (averaged over L = 4..max_len, as the paper's
figures are); a model without that layer falls back to the best head anywhere. When a head of
another layer scores higher it is named too (``stronger_elsewhere``): a second-layer head that
attends to EoI is not the paper's EoI locator, but a reader should know it is there.
The *emergence step* is the first recorded step at which the circuit head reached ``EMERGED`` (0.9).

Each circuit head is graded against that bar, on its final ``peaky_thres``: ``clear`` (at or above
``EMERGED``), ``partial`` (at or above ``PARTIAL``) or ``none``. A finished run's verdict states the
grade; a live run's says what is forming "so far" and what is not there "yet".
"""

from __future__ import annotations

import math
from collections import defaultdict

from core.causal.kinds import HEAD_PREFIXES
from core.names import (
    EXPECTED_LAYER,
    GEN_ACC,
    GEN_ANSWER_ACC,
    HEADLINE_SCORE,
    ROLE_TITLES,
    ROLES,
    SCORES,
    SEQ_ACC,
    SEQ_ACC_HELDOUT,
    SPLITS,
    TEST,
    every_head_label,
    head_label,
    metric_key,
    score_key,
    try_parse_metric_key,
    try_parse_score_key,
)

EMERGED = 0.9  # the bar: a clear circuit head
PARTIAL = 0.5  # a head at or above this, under the bar, is a partial one
GRADES = ("clear", "partial", "none")


def grade(peaky_thres: float | None) -> str:
    """``clear``, ``partial`` or ``none``: a circuit head's final peaky_thres against the bars."""
    if peaky_thres is None or peaky_thres < PARTIAL:
        return "none"
    return "clear" if peaky_thres >= EMERGED else "partial"


def _last(series: dict[int, float]) -> tuple[int, float] | None:
    if not series:
        return None
    step = max(series)
    return step, series[step]


def run_summary(session, run) -> dict:
    """A run's summary: the one stored when it finished, else derived from all its metrics so far.

    The one place that says so, for the CLI, the causal jobs, the server and the benchmarks alike
    (all metrics, not just the scores: the summary's accuracy needs the ``test/`` rows too).
    """
    if run.summary:
        return dict(run.summary)
    from core.db import crud  # torch-free; imported here so the summary itself needs no database

    return summarize(crud.get_metrics(session, run_id=run.id, keys=summary_keys(run.spec or {})))


def summary_keys(spec: dict) -> list[str] | None:
    """The metric keys ``summarize`` reads for a run of ``spec`` (flat keys): every split's mean and
    per-length sequence accuracy, the test split's extra accuracies, and every head's whole-probe-set
    scores. A live run's summary so far reads only these rows (per-length scores, most of the
    metrics table, stay in the database), and it equals the summary of all rows (tested).
    None (read every row) for a spec that does not give the model's shape and lengths."""
    if any(spec.get(key) is None for key in ("n_layers", "n_heads", "max_len")):
        return None
    longest = max(int(spec.get("max_len") or 1), int(spec.get("test_max_len") or 0))
    n_layers, n_heads = int(spec.get("n_layers") or 1), int(spec.get("n_heads") or 1)
    keys = [metric_key(TEST, name) for name in (GEN_ACC, GEN_ANSWER_ACC, SEQ_ACC_HELDOUT)]
    for split in SPLITS:
        keys += [metric_key(split, SEQ_ACC)] + [metric_key(split, SEQ_ACC, n) for n in range(1, longest + 1)]
    return keys + [score_key(role, score, layer, head) for role in ROLES for score in SCORES
                   for layer in range(n_layers) for head in range(n_heads)]


def summarize(rows: list[tuple[str, int, float]], *, finished: bool = False) -> dict:
    """rows: (key, step, value) of one run -> a JSON-ready summary dict (``finished``: the run has ended)."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for key, step, value in rows:
        series[key][step] = value

    metrics = {key: found for key in series if (found := try_parse_metric_key(key)) is not None}
    scored = {key: found for key in series if (found := try_parse_score_key(key)) is not None}

    accuracy: dict[str, dict] = {}
    for split in SPLITS:
        by_length = {m.length: _last(series[key])[1] for key, m in metrics.items()
                     if m.split == split and m.name == SEQ_ACC and m.length is not None}
        mean = _last(series.get(metric_key(split, SEQ_ACC), {}))
        accuracy[split] = {SEQ_ACC: mean[1] if mean else None,
                           "step": mean[0] if mean else None,
                           "seq_acc_by_length": {str(n): v for n, v in sorted(by_length.items())}}  # JSON keys
    for name in (GEN_ACC, GEN_ANSWER_ACC, SEQ_ACC_HELDOUT):
        last = _last(series.get(metric_key(TEST, name), {}))
        if last:
            accuracy[TEST][name] = last[1]

    heads: dict[str, dict] = {}
    for role in ROLES:
        finals = []  # (final peaky_thres, layer, head, key) of every head with a score
        for key, s in scored.items():
            if s.role != role or s.score != HEADLINE_SCORE or s.length is not None:
                continue
            final = _last(series[key])[1]
            if not math.isnan(final):
                finals.append((final, s.layer, s.head, key))
        if not finals:
            continue
        in_layer = [f for f in finals if f[1] == EXPECTED_LAYER[role]]
        best = max(in_layer or finals, key=lambda f: f[0])
        elsewhere = max((f for f in finals if f[1] != best[1]), key=lambda f: f[0], default=None)
        _, layer, head, key = best
        emerged = [step for step, value in sorted(series[key].items()) if value >= EMERGED]
        scores = {}
        for score in SCORES:
            last = _last(series.get(score_key(role, score, layer, head), {}))
            scores[score] = last[1] if last else None
        heads[role] = {"layer": layer, "head": head, "label": head_label(layer, head),
                       "expected_layer": EXPECTED_LAYER[role], "scores": scores,
                       "emerged_step": emerged[0] if emerged else None,
                       "grade": grade(scores[HEADLINE_SCORE]), "bar": EMERGED}
        if elsewhere is not None and elsewhere[0] > best[0]:
            heads[role]["stronger_elsewhere"] = {"label": head_label(elsewhere[1], elsewhere[2]),
                                                 HEADLINE_SCORE: elsewhere[0]}
    return {"accuracy": accuracy, "heads": heads, "verdict": verdict(accuracy, heads, finished=finished),
            "finished": finished}


def verdict(accuracy: dict, heads: dict, *, finished: bool = False) -> str:
    """One line a person reads first: 'iteration head at L1H0 from step 3,200; partial EoI locator ...'.

    A clear head is named with its emergence step; a partial or absent one with its score against
    the bar. Only a live run says "so far" or "yet": a finished run's grade is final.
    """
    parts = []
    for role in ROLES:
        info = heads.get(role)
        if info is None:
            continue
        title = ROLE_TITLES[role]
        thres = info["scores"][HEADLINE_SCORE]
        against = f"{HEADLINE_SCORE} {thres:.2f} against the {EMERGED:.2f} bar"
        where = "" if info["layer"] == info["expected_layer"] else " (not the layer the theory expects)"
        graded = grade(thres)
        if graded == "clear" and info["emerged_step"] is not None:
            part = f"{title} at {info['label']} from step {info['emerged_step']:,}{where}"
        elif graded == "partial":
            part = f"partial {title}{' so far' if not finished else ''} at {info['label']} ({against}){where}"
        else:
            part = f"no {title}{' yet' if not finished else ''} (best {info['label']}, {against})"
        if "stronger_elsewhere" in info:
            other = info["stronger_elsewhere"]
            part += f", though {other['label']} outside layer {info['expected_layer']} scores {other[HEADLINE_SCORE]:.2f}"
        parts.append(part)
    acc = accuracy.get("test", {}).get("seq_acc")
    if acc is not None:
        parts.append(f"test accuracy {acc:.2f} (L = 4..max)")
    return "; ".join(parts)


# ---------------------------------------------------------------- causal verdict

_PHRASES = {  # intervention label -> what was done, for a head (or, with "*", for every head of its layer)
    "edge/eoi/raw": "zeroing its EoI edge", "edge/eoi/renorm": "zeroing its EoI edge (renormalised)",
    "edge/iteration/raw": "zeroing its iteration edge",
    "edge/iteration/renorm": "zeroing its iteration edge (renormalised)",
    "ablate/zero": "zero-ablating it", "ablate/mean": "mean-ablating it", "ablate/resample": "resample-ablating it",
    "pattern/ideal": "patching its ideal map",
}
CHANGED = 0.05  # an accuracy change smaller than this "keeps" accuracy


def _effect(phrase: str, result: dict, step: int) -> str:
    before, after = result["baseline"]["mean"], result["mean"]
    verb = "drops" if after < before - CHANGED else "raises" if after > before + CHANGED else "keeps"
    figures = f"{after:.2f}" if verb == "keeps" else f"{before:.2f} -> {after:.2f}"
    return f"{phrase} {verb} accuracy {figures} (step {step:,})"


def causal_verdict(summary: dict, results: list[dict]) -> dict:
    """Attention scores and stored intervention results in a few lines a person reads first.

    ``results``: rows of ``core.causal.results.list_results`` (intervention, target, step, result).
    For each circuit head: ``"iteration head L1H3: peaky_thres 0.87; zeroing its iteration edge drops
    accuracy 0.99 -> 0.09 (step 3,000)"``, using the latest step of each intervention on that head or
    on its whole layer (``L1H*``, said as "in every layer-1 head"); then any intervention on several
    heads together (``L0H3+L1H3``). Returns ``{"lines": [{"text", "role", "intervention", "target",
    "step"}...], "text": the lines joined}``; correlational only (no causal line) until results exist.
    """
    latest: dict[tuple[str, str], dict] = {}
    for row in results:
        result = row.get("result") or {}
        if "baseline" not in result or result.get("mean") is None:
            continue  # only evaluations (ablate, edge, pattern) speak of accuracy
        key = (row["intervention"], row["target"])
        if key not in latest or row["step"] > latest[key]["step"]:
            latest[key] = row
    lines = []
    for role in ROLES:
        info = (summary.get("heads") or {}).get(role)
        if info is None:
            continue
        label, layer = info["label"], info["layer"]
        thres = info["scores"].get(HEADLINE_SCORE)
        parts = [f"{ROLE_TITLES[role]} {label}: {HEADLINE_SCORE} {thres:.2f}" if thres is not None else f"{ROLE_TITLES[role]} {label}"]
        used = []
        order = list(_PHRASES)  # edges first, then ablations, then patching
        for (intervention, target), row in sorted(latest.items(), key=lambda item: (order.index(item[0][0])
                                                  if item[0][0] in order else len(order), item[0][1])):
            if intervention not in _PHRASES or target not in (label, every_head_label(layer)):
                continue
            phrase = _PHRASES[intervention]
            if target.endswith("*"):  # "zeroing the EoI edge in every layer-0 head", "zero-ablating every layer-1 head"
                every = f"every layer-{layer} head"
                phrase = phrase.replace(" it", f" {every}") if phrase.endswith(" it") else \
                    phrase.replace("its ", "the ") + f" in {every}"
            parts.append(_effect(phrase, row["result"], row["step"]))
            used.append((intervention, target, row["step"]))
        lines.append({"text": "; ".join(parts), "role": role, "interventions": used})
    for (intervention, target), row in sorted(latest.items()):
        if "+" in target and intervention.split("/", 1)[0] in HEAD_PREFIXES:
            what = {"pattern/ideal": "patching their ideal maps"}.get(intervention, intervention)
            lines.append({"text": f"{target}: " + _effect(what, row["result"], row["step"]), "role": None,
                          "interventions": [(intervention, target, row["step"])]})
    return {"lines": lines, "text": "; ".join(line["text"] for line in lines)}
