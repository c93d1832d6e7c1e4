"""Runs as the dashboard reads them: the list, one run, its metrics and its attention snapshots.

Every function takes the Session first and keywords after, reads only, and returns a model of
``server.views.schemas``. Links inside the models are owner paths (``/runs/7``); a shared page
prefixes them with ``access.url``.

The runs list costs two queries whatever the page size (the runs of the page, and their count),
and reads no blob: a row's progress comes from ``runs.step``/``runs.total_steps``, its accuracy and
verdict from ``runs.summary``. A run's live figures (steps/s, ETA, loss) come from its latest train
job's ``progress``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import crud, jobs
from core.db.jobs import TERMINAL
from core.db.models import Job, Run, Snapshot, Status, Sweep
from core.names import (
    EXPECTED_LAYER,
    HEADLINE_SCORE,
    LOSS,
    ROLE_TITLES,
    ROLES,
    SEQ_ACC,
    SPLITS,
    TRAIN,
    head_label,
    head_score_keys,
    metric_key,
    try_parse_score_key,
)
from core.problems import expected_keys
from core.snapshots import real_width, token_label, unpack
from core.specs.errors import SpecError
from core.summary import run_summary
from server.access import OWNER, Access
from server.errors import NotFound
from server.views.schemas import (
    ExpectedCells,
    Lineage,
    MetricPoint,
    Metrics,
    Progress,
    RunDetail,
    RunItem,
    RunPage,
    RunRef,
    Series,
    SnapshotView,
)

TABLE_SETTINGS = ("max_len", "n_layers", "n_heads", "d_model", "lr", "steps", "seed")  # shown in the runs table
SORTS = {  # ?sort= value -> ORDER BY; "-" is descending
    "created": Run.id, "name": Run.name, "status": Run.status, "step": Run.step,
    "acc": Run.summary[("accuracy", "test", "seq_acc")].as_float(),
}
MAX_LIMIT = 200


# ---------------------------------------------------------------- the runs list


@dataclass(frozen=True)
class RunQuery:
    """Filters, order and page of the runs list (the query string of ``/`` and ``/api/runs``)."""

    problem: str | None = None
    status: str | None = None
    tag: str | None = None
    q: str | None = None  # text in the name or the notes
    sort: str = "-created"
    limit: int = 50
    offset: int = 0
    run_ids: frozenset[int] | None = None  # a share link's runs; None: all


def list_runs(session: Session, *, query: RunQuery) -> RunPage:
    """One page of runs, newest first unless ``query.sort`` says otherwise, and the total count."""
    filters = _filters(query)
    key = query.sort.lstrip("-")
    column = SORTS.get(key, Run.id)
    order = column.desc() if query.sort.startswith("-") else column.asc()
    limit = max(1, min(query.limit, MAX_LIMIT))
    offset = max(0, query.offset)
    rows = session.scalars(select(Run).where(*filters).order_by(order.nulls_last(), Run.id.desc())
                           .limit(limit).offset(offset)).all()
    total = session.scalar(select(func.count()).select_from(Run).where(*filters)) or 0
    return RunPage(runs=[run_item(run) for run in rows], total=total, limit=limit, offset=offset)


def _filters(query: RunQuery) -> list[Any]:
    return crud.run_filters(problem=query.problem or None, status=query.status or None, tag=query.tag or None,
                            text=query.q or None, run_ids=query.run_ids)


def run_item(run: Run) -> RunItem:
    spec, summary = run.spec or {}, run.summary or {}
    return RunItem(
        id=run.id, url=f"/runs/{run.id}", name=run.name, status=run.status, preset=run.preset,
        problem=spec.get("problem"), settings={key: spec.get(key) for key in TABLE_SETTINGS},
        step=run.step or 0, total_steps=run.total_steps or 0, fraction=_fraction(run.step, run.total_steps),
        test_acc=summary.get("accuracy", {}).get("test", {}).get("seq_acc"), verdict=summary.get("verdict"),
        tags=list(run.tags or []), created_at=run.created_at, parent_run_id=run.parent_run_id,
        sweep_id=run.sweep_id)


def _fraction(step: int | None, total: int | None) -> float:
    return min(1.0, (step or 0) / total) if total else 0.0


# ---------------------------------------------------------------- one run


def get_run(session: Session, *, run_id: int) -> Run:
    run = crud.get_run(session, run_id=run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run


latest_train_job = jobs.latest_train_job  # the newest train job of a run: the one its status and progress follow


def progress(run: Run, job: Job | None) -> Progress:
    """The job's live figures where it has them, else the run's own step counter."""
    figures = dict(job.progress or {}) if job is not None else {}
    step = max(int(figures.get("step") or 0), run.step or 0)
    total = int(figures.get("total") or run.total_steps or 0)
    running = run.status == Status.RUNNING.value
    silent = jobs.seconds_without_progress(job) if running and job is not None else None
    return Progress(step=step, total=total, fraction=_fraction(step, total),
                    steps_per_s=figures.get("steps_per_s") if running else None,
                    eta_s=figures.get("eta_s") if running else None,
                    loss=figures.get("loss"), test_seq_acc=figures.get("test_seq_acc"), lr=figures.get("lr"),
                    job_id=job.id if job else None, job_status=job.status if job else None,
                    attempt=job.attempt if job else None, silent_s=silent)


STALL_NOTE_AFTER_S = 120  # a running job silent this long gets a "no progress for N min" line on its page


def stall_note(silent_s: float | None, *, stall_seconds: int) -> str | None:
    """"no progress for 7 min; ..." for a running job silent at least STALL_NOTE_AFTER_S, else None.

    ``stall_seconds`` is the supervisor's limit (``CIRCUITBOARD_STALL_SECONDS``; 0: never kills).
    ``static/js/run.js`` words the same sentence when it polls: keep the two in step."""
    if silent_s is None or silent_s < STALL_NOTE_AFTER_S:
        return None
    note = f"no progress for {int(silent_s // 60)} min"
    if not stall_seconds:
        return note + "; the worker never kills a silent training process (CIRCUITBOARD_STALL_SECONDS=0)"
    return (note + f"; the worker kills and resumes a training process silent for {_minutes(stall_seconds)}"
            " (CIRCUITBOARD_STALL_SECONDS)")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_detail(session: Session, *, run_id: int, access: Access = OWNER) -> RunDetail:
    """The run; its lineage names only the runs and the sweep that ``access`` may see. Its summary is
    the stored one, or, before the run has ended, the summary so far (``core.summary.run_summary``)."""
    run = get_run(session, run_id=run_id)
    job = latest_train_job(session, run_id=run_id)
    return RunDetail(
        id=run.id, url=f"/runs/{run.id}", name=run.name, status=run.status, preset=run.preset,
        tags=list(run.tags or []), notes=run.notes or "", created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at, progress=progress(run, job),
        config=dict(run.spec or {}), summary=run_summary(session, run), lineage=lineage(session, run=run, access=access),
        error=run.error or (job.error if job is not None and job.status == Status.FAILED.value else None),
        snapshot_steps=crud.list_snapshot_steps(session, run_id=run_id),
        checkpoint_steps=crud.checkpoint_steps(session, run_id=run_id),
        terminal=run.status in TERMINAL)


def lineage(session: Session, *, run: Run, access: Access = OWNER) -> Lineage:
    """Parent, children and sweep of ``run``, less whatever ``access`` may not see (a share link names
    its runs only: a hidden parent is reported as ``parent_hidden``, hidden children and sweeps not at all)."""
    parent, parent_hidden = None, False
    if run.parent_run_id is not None:
        if access.can_see_run(run.parent_run_id):
            row = session.get(Run, run.parent_run_id)
            parent = RunRef(id=run.parent_run_id, name=row.name if row else None,
                            status=row.status if row else None, step=run.parent_step,
                            url=f"/runs/{run.parent_run_id}")
        else:
            parent_hidden = True
    children = [RunRef(id=id_, name=name, status=status, step=step, url=f"/runs/{id_}")
                for id_, name, status, step in session.execute(
                    select(Run.id, Run.name, Run.status, Run.parent_step)
                    .where(Run.parent_run_id == run.id).order_by(Run.id))
                if access.can_see_run(id_)]
    if run.sweep_id is None or not access.can_see_sweep(run.sweep_id):
        return Lineage(parent=parent, parent_hidden=parent_hidden, children=children)
    sweep_name = session.scalar(select(Sweep.name).where(Sweep.id == run.sweep_id))
    return Lineage(parent=parent, parent_hidden=parent_hidden, children=children, sweep_id=run.sweep_id,
                   sweep_name=sweep_name, sweep_cell=run.sweep_cell)


# ---------------------------------------------------------------- metrics


def metrics(session: Session, *, run_id: int, keys: Sequence[str] | None = None, prefix: str | None = None,
            grouped: bool = False) -> Metrics:
    """The run's (key, step, value) rows, or with ``grouped`` one series per key; NaN becomes None."""
    get_run(session, run_id=run_id)
    rows = crud.get_metrics(session, run_id=run_id, keys=keys or None, prefix=prefix or None)
    if not grouped:
        return Metrics(run_id=run_id, rows=[MetricPoint(key=k, step=s, value=_finite(v)) for k, s, v in rows])
    return Metrics(run_id=run_id, series=series(rows))


def series(rows: Sequence[tuple[str, int, float]]) -> dict[str, Series]:
    """(key, step, value) rows (ordered by key, step) -> {key: Series}."""
    grouped: dict[str, Series] = {}
    for key, step, value in rows:
        entry = grouped.setdefault(key, Series(steps=[], values=[]))
        entry.steps.append(step)
        entry.values.append(_finite(value))
    return grouped


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


# ---------------------------------------------------------------- snapshots


def snapshot_steps(session: Session, *, run_id: int) -> list[int]:
    get_run(session, run_id=run_id)
    return crud.list_snapshot_steps(session, run_id=run_id)


def expected_cells(length: int) -> list[ExpectedCells]:
    """The theory's cells for both roles on a sequence of input length L (core.problems.theory)."""
    cells = []
    for role in ROLES:
        queries, keys = expected_keys(role, length)
        cells.append(ExpectedCells(role=role, title=ROLE_TITLES[role], layer=EXPECTED_LAYER[role],
                                   cells=[[int(q), int(k)] for q, k in zip(queries, keys)]))
    return cells


def snapshot_lengths(session: Session, *, run_id: int, step: int) -> list[int]:
    """The input length of each probe sequence in the snapshot at ``step`` (its layout only: no unpacking).
    The row stays in the session, so a following ``snapshot_view`` of the same step reads it again for free."""
    row = crud.get_snapshot(session, run_id=run_id, step=step)
    if row is None:
        raise NotFound(f"run {run_id} has no snapshot at step {step}")
    return [int(n) for n in row.layout["lengths"]]


def snapshot_view(session: Session, *, run_id: int, step: int, probe: int = 0) -> SnapshotView:
    """Probe sequence ``probe``'s attention at ``step``, for every layer and head (well under 64 KB as JSON)."""
    get_run(session, run_id=run_id)
    row = crud.get_snapshot(session, run_id=run_id, step=step)
    steps = crud.list_snapshot_steps(session, run_id=run_id)
    if row is None:
        raise NotFound(f"run {run_id} has no snapshot at step {step}; snapshot steps: {_steps_text(steps)}")
    probe_set = crud.get_probe_set(session, run_id=run_id)
    lengths = [int(n) for n in row.layout["lengths"]]
    if not 0 <= probe < len(lengths):
        raise NotFound(f"probe {probe} is out of range: the probe set has {len(lengths)} sequences (0..{len(lengths) - 1})")
    length = lengths[probe]
    width = real_width(length)  # the real tokens; core.snapshots keeps only these
    patterns = unpack(row.data, row.layout)[probe, :, :, :width, :width]  # [layers, heads, W, W]
    row_tokens = [int(t) for t in probe_set[0][probe, :width]] if probe_set is not None else [0] * width
    return SnapshotView(
        run_id=run_id, step=step, steps=steps, probe=probe, length=length, lengths=lengths, tokens=row_tokens,
        labels=[token_label(t, i, length) for i, t in enumerate(row_tokens)],
        n_layers=patterns.shape[0], n_heads=patterns.shape[1], attention=_lower_triangle(patterns),
        expected=expected_cells(length))


def _lower_triangle(patterns: np.ndarray) -> list:
    """[layers, heads, W, W] -> nested lists, row q keeping keys 0..q, rounded to 3 decimals."""
    rounded = np.round(patterns.astype(np.float64), 3)
    return [[[rounded[layer, head, q, :q + 1].tolist() for q in range(rounded.shape[2])]
             for head in range(rounded.shape[1])] for layer in range(rounded.shape[0])]


def _steps_text(steps: Sequence[int]) -> str:
    if not steps:
        return "none yet"
    shown = ", ".join(str(s) for s in steps[:20])
    return shown + (f", ... ({len(steps)} in all)" if len(steps) > 20 else "")


def all_snapshots(session: Session, *, run_id: int) -> dict[str, np.ndarray]:
    """Every snapshot of the run as arrays (for the npz download): ``step_<n>`` [N, layers, heads, W, W]
    float16, plus ``steps``, and the probe set's ``tokens`` and ``lengths``."""
    get_run(session, run_id=run_id)
    arrays: dict[str, np.ndarray] = {}
    rows = session.scalars(select(Snapshot).where(Snapshot.run_id == run_id).order_by(Snapshot.step)).all()
    steps = [row.step for row in rows]
    for row in rows:  # one query for every snapshot
        arrays[f"step_{row.step}"] = unpack(row.data, row.layout).astype(np.float16)
    arrays["steps"] = np.asarray(steps, dtype=np.int64)
    probe_set = crud.get_probe_set(session, run_id=run_id)
    if probe_set is not None:
        arrays["tokens"], arrays["lengths"] = probe_set
    return arrays


@dataclass(frozen=True)
class HeadOverTraining:
    """One head's attention on one probe sequence at every snapshot step (the animated GIF's frames)."""

    layer: int
    head: int
    probe: int
    length: int  # the probe sequence's input length L
    steps: list[int]
    maps: list[np.ndarray]  # one [W, W] float32 per step, W = real_width(L), zero above the diagonal


MAX_FRAMES = 300  # more snapshots than this are thinned evenly, the first and last kept


def head_over_training(session: Session, *, run_id: int, layer: int, head: int, probe: int) -> HeadOverTraining:
    """The maps of ``L{layer}H{head}`` on probe ``probe`` at each snapshot step (at most ``MAX_FRAMES``).

    404 (``NotFound``) for an unknown run or one with no snapshot yet; 422 (``SpecError``, naming the
    query field) for a layer, head or probe the run does not have."""
    get_run(session, run_id=run_id)
    steps = crud.list_snapshot_steps(session, run_id=run_id)
    if not steps:
        raise NotFound(f"run {run_id} has no snapshot yet: the first one is taken at step 0")
    if len(steps) > MAX_FRAMES:
        picks = np.linspace(0, len(steps) - 1, MAX_FRAMES).round().astype(int)
        steps = [steps[i] for i in sorted(set(picks.tolist()))]
    layout = crud.get_snapshot(session, run_id=run_id, step=steps[0]).layout
    lengths = [int(n) for n in layout["lengths"]]
    limits = {"layer": (layer, int(layout["n_layers"]), "layer"), "head": (head, int(layout["n_heads"]), "head"),
              "probe": (probe, len(lengths), "probe sequence")}
    problems = [(field, f"must be {'0' if n == 1 else f'0..{n - 1}'} (got {value}): the run has {n} {what}{'s' * (n != 1)}")
                for field, (value, n, what) in limits.items() if value >= n]
    if problems:
        raise SpecError(problems)
    width = real_width(lengths[probe])
    maps = []
    for step in steps:  # one row at a time: a long run's snapshots need not all be in memory
        row = crud.get_snapshot(session, run_id=run_id, step=step)
        maps.append(unpack(row.data, row.layout)[probe, layer, head, :width, :width])
        session.expunge(row)
    return HeadOverTraining(layer=layer, head=head, probe=probe, length=lengths[probe], steps=steps, maps=maps)


# ---------------------------------------------------------------- the emergence matrix


def score_matrix(rows: Sequence[tuple[str, int, float]], *, role: str, score: str) -> dict:
    """Score keys of one role and score -> {"heads": ["L0H0", ...], "steps": [...], "z": [[...]]}.

    ``rows`` are (key, step, value) from the metrics table; only whole-probe-set scores (no ``/len``)
    count. Rows are heads in (layer, head) order; a missing cell is None.
    """
    cells: dict[tuple[int, int], dict[int, float | None]] = defaultdict(dict)
    steps: set[int] = set()
    for key, step, value in rows:
        parsed = try_parse_score_key(key)
        if parsed is None or parsed.role != role or parsed.score != score or parsed.length is not None:
            continue
        cells[(parsed.layer, parsed.head)][step] = _finite(value)
        steps.add(step)
    ordered_steps = sorted(steps)
    heads = sorted(cells)
    return {"heads": [head_label(layer, head) for layer, head in heads], "steps": ordered_steps,
            "z": [[cells[h].get(step) for step in ordered_steps] for h in heads]}


def figure_keys(spec: dict, *, score: str) -> list[str]:
    """The metric keys the run page draws, from the run's spec: the loss, sequence accuracy (mean and
    per length, both splits) and the whole-probe-set ``score`` and ``peaky_thres`` of every head."""
    longest = max(int(spec.get("max_len") or 1), int(spec.get("test_max_len") or 0))
    n_layers, n_heads = int(spec.get("n_layers") or 1), int(spec.get("n_heads") or 1)
    keys = [metric_key(TRAIN, LOSS)]
    for split in SPLITS:
        keys += [metric_key(split, SEQ_ACC)] + [metric_key(split, SEQ_ACC, n) for n in range(1, longest + 1)]
    for role in ROLES:
        for name in sorted({score, HEADLINE_SCORE}):
            keys += head_score_keys(role, name, n_layers, n_heads)
    return keys


def figure_rows(session: Session, *, run_id: int, score: str) -> list[tuple[str, int, float]]:
    """The metric rows the run page draws (``figure_keys``), read through the metrics primary key;
    per-length scores, most of the table, stay in the database."""
    run = get_run(session, run_id=run_id)
    return crud.get_metrics(session, run_id=run_id, keys=figure_keys(run.spec or {}, score=score))
