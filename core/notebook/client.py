"""The notebook client: ``open`` a database or a server, list its runs, read one run's records.

    from core.notebook import open as cb_open
    cb = cb_open("sqlite:///circuitboard.db")            # or "http://127.0.0.1:8000", token=...
    runs = cb.runs(status="SUCCEEDED", preset="fast-parity")
    run = cb.run(7)
    steps, loss = run.metrics("train/loss")["train/loss"]
    snap = run.snapshot(250, probe=3)                     # snap.attention [layer, head, query, key]
    model = run.model(250)                                # core.ml.model.Transformer, eval mode

Both sources (``core.notebook.database``, ``core.notebook.http``) return the same plain data, so a
notebook written against a laptop's SQLite file runs unchanged against a lab's server. Torch is
imported only by ``Run.model`` and ``Run.hooked_model``, pandas only by ``to_dataframe``; every
error is a :class:`~core.notebook.errors.NotebookError` naming what was asked for.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from core.db.models import Status
from core.notebook.errors import NotebookError
from core.problems import expected_keys
from core.names import ROLES
from core.snapshots import real_width, token_label

STATUSES = tuple(s.value for s in Status)


def open(target: str | os.PathLike, *, token: str | None = None, timeout: float = 60.0) -> Client:  # noqa: A001
    """A client on ``target``: a server URL (``http://127.0.0.1:8000``, or a share link's
    ``http://host/s/<token>``), a database URL (``sqlite:///circuitboard.db``,
    ``postgresql+psycopg://...``) or the path of an SQLite file. ``token``: a lab server's token."""
    text = os.fspath(target)
    if text.startswith(("http://", "https://")):
        from core.notebook.http import HttpSource

        return Client(HttpSource(text, token=token, timeout=timeout))
    if token is not None:
        raise NotebookError("token: only a server URL takes a token (a database URL carries its own credentials)")
    from core.notebook.database import DatabaseSource

    return Client(DatabaseSource(text if "://" in text else f"sqlite:///{text}"))


class Client:
    """Runs of one source. Close it (or use ``with``) to release its connections."""

    def __init__(self, source):
        self.source = source

    def __repr__(self) -> str:
        return f"<circuitboard {self.source.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        self.source.close()

    def runs(self, *, status: str | None = None, preset: str | None = None, problem: str | None = None,
             tag: str | None = None, text: str | None = None) -> Runs:
        """Runs newest first: of a ``status``, a ``preset``, a ``problem``, with a ``tag``, with
        ``text`` in the name or notes (None leaves a criterion out). Reads each run's record."""
        if status is not None and str(status).upper() not in STATUSES:
            raise NotebookError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        ids = self.source.run_ids(status=None if status is None else str(status).upper(), problem=problem,
                                  tag=tag, text=text)
        found = (self.run(run_id) for run_id in ids)
        return Runs(run for run in found if preset is None or run.preset == preset)

    def run(self, run_id: int) -> Run:
        """One run; NotebookError when there is none with that id."""
        if isinstance(run_id, bool) or not isinstance(run_id, int | np.integer) or run_id < 1:
            raise NotebookError(f"run_id: a positive integer, got {run_id!r}")
        return Run(self.source.run(int(run_id)), self.source)


class Runs(list):
    """A list of :class:`Run` that can become a table: ``runs.to_dataframe()``."""

    def to_dataframe(self):
        """One row per run (index ``id``): name, status, preset, created_at, tags, every spec key,
        and the summary flattened to ``summary.<path>`` columns (``summary.accuracy.test.seq_acc``)."""
        pandas = _pandas()
        rows = []
        for run in self:
            row = {"id": run.id, "name": run.name, "status": run.status, "preset": run.preset,
                   "created_at": run.created_at, "tags": run.tags, **run.spec}
            row.update(_flatten(run.summary, "summary"))
            rows.append(row)
        return pandas.DataFrame(rows).set_index("id") if rows else pandas.DataFrame()


class Run:
    """One run's record (``spec``: the flat spec; ``summary``: accuracy, circuit heads, verdict) and
    its recorded metrics, snapshots, checkpoints and intervention results."""

    id: int
    name: str | None
    status: str
    preset: str | None
    tags: list[str]
    notes: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    spec: dict[str, Any]
    summary: dict[str, Any]
    error: str | None
    parent_run_id: int | None
    parent_step: int | None
    sweep_id: int | None
    snapshot_steps: list[int]
    checkpoint_steps: list[int]

    def __init__(self, record: dict[str, Any], source):
        self.__dict__.update(record)
        self._source = source

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name or '(unnamed)'} {self.status} preset={self.preset}>"

    def refresh(self) -> Run:
        """The run read again (a live run's status, summary and steps move on)."""
        return Run(self._source.run(self.id), self._source)

    # ------------------------------------------------------------ metrics

    def metrics(self, keys: str | Sequence[str] | None = None, *, prefix: str | None = None) -> dict[str, tuple]:
        """``{key: (steps int64 ndarray, values float64 ndarray)}`` for ``keys`` (one key or several;
        None: every recorded key, or those starting with ``prefix``). NaN stands for a NaN value.
        Keys (``train/loss``, ``test/seq_acc/L7``, ``score/iteration/peaky_thres/L1H0``) are core.names'."""
        wanted = _keys(keys)
        if wanted == []:
            return {}
        found = self._source.metrics(self.id, keys=wanted, prefix=prefix)
        missing = [key for key in wanted or [] if key not in found]
        if missing:
            raise NotebookError(f"keys: run {self.id} recorded no {', '.join(map(repr, missing))} "
                                "(run.metrics() with no keys returns every recorded key)")
        return found

    # ------------------------------------------------------------ snapshots

    def snapshot(self, step: int | None = None, *, probe: int = 0) -> Snapshot:
        """Probe sequence ``probe``'s attention at snapshot ``step`` (None: the last), every layer and head."""
        step = self._step(step, self.snapshot_steps, "snapshot")
        patterns, tokens, lengths = self._source.snapshot(self.id, step)
        if isinstance(probe, bool) or not isinstance(probe, int | np.integer) or not 0 <= probe < len(lengths):
            raise NotebookError(f"probe: {probe!r} is out of range: the probe set has {len(lengths)} "
                                f"sequences (0..{len(lengths) - 1})")
        length = lengths[probe]
        width = real_width(length)
        row = [int(t) for t in tokens[probe, :width]]
        expected = {role: expected_keys(role, length) for role in ROLES}
        return Snapshot(run_id=self.id, step=step, probe=int(probe), length=length, lengths=lengths, tokens=row,
                        labels=[token_label(t, i, length) for i, t in enumerate(row)],
                        attention=np.ascontiguousarray(patterns[probe, :, :, :width, :width]), expected=expected)

    # ------------------------------------------------------------ checkpoints

    def model(self, step: int | None = None):
        """The run's model (``core.ml.model.Transformer``, eval mode, CPU) with the checkpoint at
        ``step`` loaded (None: the last checkpoint). Needs torch."""
        step = self._step(step, self.checkpoint_steps, "checkpoint")
        data = self._source.checkpoint(self.id, step)
        if importlib.util.find_spec("torch") is None:
            raise NotebookError("run.model needs torch: pip install 'circuitboard[ml]'")
        from core.ml import checkpoints
        from core.ml.model import ModelConfig, Transformer
        from core.specs.run import RunSpec

        model = Transformer(ModelConfig.from_spec(RunSpec.from_flat(self.spec)))
        model.load_state_dict(checkpoints.from_bytes(data)["model"])
        return model.eval()

    def hooked_model(self, step: int | None = None, *, paper_norm_hooks: bool = False):
        """The same checkpoint as a TransformerLens ``HookedTransformer`` computing exactly what
        ``run.model(step)`` computes (``core.ml.export.to_hooked_transformer``; a ``norm=paper`` run
        needs ``paper_norm_hooks=True``). Needs ``transformer-lens==3.9.0``."""
        if importlib.util.find_spec("transformer_lens") is None:
            raise NotebookError("run.hooked_model needs TransformerLens: pip install transformer-lens==3.9.0")
        from core.ml.export import ExportError, to_hooked_transformer

        try:
            return to_hooked_transformer(self.model(step), paper_norm_hooks=paper_norm_hooks)
        except ExportError as exc:
            raise NotebookError(f"run {self.id}: {exc}") from exc

    # ------------------------------------------------------------ interventions

    def interventions(self) -> Interventions:
        """The run's causal results: one series per (intervention, target), the causal verdict, the jobs."""
        body = self._source.interventions(self.id)
        return Interventions(run_id=self.id, steps=body["steps"], series=body["series"], heads=body["heads"],
                             verdict=body["verdict"], jobs=body["jobs"])

    def _step(self, step: int | None, recorded: list[int], what: str) -> int:
        if step is None:
            if not recorded:
                raise NotebookError(f"run {self.id} has no {what} yet")
            return recorded[-1]
        if step not in recorded:
            shown = ", ".join(map(str, recorded[:20])) + (" ..." if len(recorded) > 20 else "")
            raise NotebookError(f"step: run {self.id} has no {what} at step {step!r}; {what} steps: {shown or 'none'}")
        return int(step)


@dataclass(frozen=True)
class Snapshot:
    """One probe sequence's attention at one step: ``attention`` float32 [layer, head, query, key]
    over its real positions (rows sum to 1 over keys <= query), a label per position, and the
    theory's expected cells per role: ``expected["iteration"] == (queries, keys)``."""

    run_id: int
    step: int
    probe: int
    length: int  # its input length L; 2L + 2 positions
    lengths: list[int]  # the input length of every probe sequence (index = probe)
    tokens: list[int]
    labels: list[str]  # "[parity]", "x1=0", "EoI", "y1=1", ...
    attention: np.ndarray = field(repr=False)
    expected: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)


@dataclass(frozen=True)
class Interventions:
    """Causal results as the run page charts them (``core.causal.results.for_charts``): ``series``
    [{"intervention", "target", "kind", "latest", "points": [{"step", "mean", "baseline", ...}]}],
    the circuit ``heads``, the causal ``verdict`` and the run's intervention ``jobs``."""

    run_id: int
    steps: list[int]
    series: list[dict[str, Any]]
    heads: dict[str, Any]
    verdict: dict[str, Any]
    jobs: list[dict[str, Any]]

    def to_dataframe(self):
        """One row per charted point: intervention, target, step, mean, baseline (patching and
        probes, which store no points, appear in ``series[i]["latest"]`` only)."""
        pandas = _pandas()
        rows = [{"intervention": s["intervention"], "target": s["target"], "step": p["step"], "mean": p["mean"],
                 "baseline": p["baseline"]} for s in self.series for p in s.get("points", [])]
        return pandas.DataFrame(rows, columns=["intervention", "target", "step", "mean", "baseline"])


def _keys(keys: str | Sequence[str] | None) -> list[str] | None:
    if keys is None or isinstance(keys, str):
        return None if keys is None else [keys]
    if not isinstance(keys, Sequence) or not all(isinstance(k, str) for k in keys):
        raise NotebookError(f"keys: a metric key or a list of them, got {keys!r}")
    return list(dict.fromkeys(keys))


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out.update(_flatten(inner, f"{prefix}.{key}"))
    return out


def _pandas():
    try:
        import pandas
    except ImportError as exc:
        raise NotebookError("to_dataframe needs pandas: pip install pandas (everything else works without it)") from exc
    return pandas
