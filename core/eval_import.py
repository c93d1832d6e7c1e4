"""Import the authors' ``eval.csv`` (facebookresearch/pal, projects/cot) into a run's metrics.

The reference trainer appends one row per evaluation (every ``eval_freq`` epochs) to
``eval.csv``: a ``timestamp`` column holding the epoch, then its evaluator's columns for the train
split (suffix ``_train``) and the test split (``_test``):

- ``acc_len_{L}``: sequence accuracy at input length L (teacher forcing, like ours);
- with ``full_eval``: ``boi``, ``eoi``, ``eos`` (grammar checks, not imported) and, per length,
  ``attn0_inv_{L}``, ``attn1_inv_{L}``, ``attn{0,1}_peaky_abs_{L}``, ``attn{0,1}_peaky_thres_{L}``:
  the one head of layer 0 scored as the EoI locator, the one head of layer 1 as the iteration head.

They become our keys at step = epoch x ``steps_per_epoch`` (64: 16 lengths x 1024 rows / batch 256):
``{split}/seq_acc/L{L}`` and the paper's mean ``{split}/seq_acc`` (L = 4..max), and, from the test
columns, ``score/eoi_locator/{score}/L0H0[/len{L}]`` and ``score/iteration/{score}/L1H0[/len{L}]``
(averaged over L = 4..max like ours), so ``core.summary.summarize`` and the dashboard read an
imported run like a trained one. Torch-free.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core.db import crud
from core.names import SEQ_ACC, SPLITS, metric_key, role_of_layer, score_key
from core.problems import figure_lengths

STEPS_PER_EPOCH = 64
_ACC = re.compile(r"^acc_len_(\d+)_(train|test)$")
_ATTN = re.compile(r"^attn([01])_(inv|peaky_abs|peaky_thres)_(\d+)_(train|test)$")


class EvalCsvError(ValueError):
    """The file is not an eval.csv of the reference code."""


@dataclass
class Imported:
    rows: list[tuple[str, int, float]]
    steps: list[int]
    ignored: list[str] = field(default_factory=list)  # columns with no counterpart here


def parse(text: str, *, steps_per_epoch: int = STEPS_PER_EPOCH) -> Imported:
    """eval.csv text -> metric rows (key, step, value)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise EvalCsvError("eval.csv is empty") from None
    if not header or header[0] != "timestamp":
        raise EvalCsvError(f"eval.csv must start with a 'timestamp' column (got {header[:1]})")
    ignored = [name for name in header[1:] if not (_ACC.match(name) or _ATTN.match(name))]
    rows: list[tuple[str, int, float]] = []
    steps = []
    for line_no, values in enumerate(reader, start=2):
        if not values:
            continue
        if len(values) != len(header):
            raise EvalCsvError(f"line {line_no}: {len(values)} values for {len(header)} columns")
        try:
            step = int(float(values[0])) * steps_per_epoch
            record = {name: float(value) for name, value in zip(header[1:], values[1:])}
        except ValueError as exc:
            raise EvalCsvError(f"line {line_no}: {exc}") from None
        steps.append(step)
        rows += _metrics(record, step)
    return Imported(rows=rows, steps=steps, ignored=ignored)


def _mean(values: list[float]) -> float:
    real = [v for v in values if not math.isnan(v)]
    return sum(real) / len(real) if real else math.nan


def _metrics(record: dict[str, float], step: int) -> list[tuple[str, int, float]]:
    out = []
    accuracy: dict[str, dict[int, float]] = {split: {} for split in SPLITS}
    scores: dict[tuple[int, str], dict[int, float]] = {}
    for name, value in record.items():
        if match := _ACC.match(name):
            accuracy[match[2]][int(match[1])] = value
        elif (match := _ATTN.match(name)) and match[4] == "test":
            scores.setdefault((int(match[1]), match[2]), {})[int(match[3])] = value
    for split, by_length in accuracy.items():
        if not by_length:
            continue
        lo, hi = figure_lengths(min(by_length), max(by_length))
        for length, value in by_length.items():
            out.append((metric_key(split, SEQ_ACC, length), step, value))
        out.append((metric_key(split, SEQ_ACC), step, _mean([v for n, v in by_length.items() if lo <= n <= hi])))
    for (layer, score), by_length in scores.items():
        role = role_of_layer(layer)
        lo, hi = figure_lengths(min(by_length), max(by_length))
        for length, value in by_length.items():
            out.append((score_key(role, score, layer, 0, length), step, value))
        out.append((score_key(role, score, layer, 0), step, _mean([v for n, v in by_length.items() if lo <= n <= hi])))
    return out


def import_eval_csv(session: Session, *, run_id: int, text: str, steps_per_epoch: int = STEPS_PER_EPOCH) -> Imported:
    """Parse ``text`` and upsert its metrics into run ``run_id`` (which must exist)."""
    if crud.get_run(session, run_id=run_id) is None:
        raise crud.RunNotFound(run_id)
    imported = parse(text, steps_per_epoch=steps_per_epoch)
    crud.upsert_metrics(session, run_id=run_id, rows=imported.rows)
    return imported
