"""The shapes of what the runs API returns (pydantic, so the OpenAPI schema documents them).

Views build these models; the API returns them; the pages read their attributes. Field names
use the glossary (run, job, snapshot, probe set, checkpoint, peakiness).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Progress(BaseModel):
    """Live figures of a run's latest train job (what the worker last reported)."""

    step: int = 0
    total: int = 0
    fraction: float = 0.0  # step / total, 0..1
    steps_per_s: float | None = None
    eta_s: float | None = None
    loss: float | None = None
    test_seq_acc: float | None = None
    lr: float | None = None
    job_id: int | None = None
    job_status: str | None = None
    attempt: int | None = None
    silent_s: float | None = None  # a RUNNING job: seconds since it last reported progress


class RunItem(BaseModel):
    """One row of the runs table."""

    id: int
    url: str
    name: str | None
    status: str
    preset: str | None
    problem: str | None
    settings: dict[str, Any]  # the few spec values the table shows (layers, heads, d_model, ...)
    step: int
    total_steps: int
    fraction: float
    test_acc: float | None
    verdict: str | None
    tags: list[str]
    created_at: datetime | None
    parent_run_id: int | None
    sweep_id: int | None


class RunPage(BaseModel):
    """A page of runs and how many match the filters in all."""

    runs: list[RunItem]
    total: int
    limit: int
    offset: int


class RunRef(BaseModel):
    id: int
    name: str | None = None
    status: str | None = None
    step: int | None = None  # the step the link is about (parent_step for a parent or a child)
    url: str


class Lineage(BaseModel):
    """Where a run comes from and what came from it."""

    parent: RunRef | None = None  # the run whose checkpoint this one was initialised from
    parent_hidden: bool = False  # initialised from a run this share link does not name (parent is then None)
    children: list[RunRef] = []  # runs initialised from this one (fine-tunes)
    sweep_id: int | None = None
    sweep_name: str | None = None
    sweep_cell: dict[str, Any] | None = None


class RunDetail(BaseModel):
    """Everything the run page shows, but the arrays (metrics and snapshots have their own routes)."""

    id: int
    url: str
    name: str | None
    status: str
    preset: str | None
    tags: list[str]
    notes: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    config: dict[str, Any]  # the flat spec
    summary: dict[str, Any]  # core.summary.summarize output (accuracy, heads, verdict)
    lineage: Lineage
    error: str | None
    snapshot_steps: list[int]
    checkpoint_steps: list[int]  # steps with weights (any kind), for downloads and init_from
    terminal: bool  # SUCCEEDED, FAILED or CANCELLED: nothing more will change by itself


class MetricPoint(BaseModel):
    key: str
    step: int
    value: float | None  # None stands for NaN


class Series(BaseModel):
    steps: list[int]
    values: list[float | None]


class Metrics(BaseModel):
    """A run's metrics: long form (``rows``) or one series per key (``series``), as asked."""

    run_id: int
    rows: list[MetricPoint] | None = None
    series: dict[str, Series] | None = None


class SnapshotSteps(BaseModel):
    run_id: int
    steps: list[int]


class ExpectedCells(BaseModel):
    """The cells (query, key) the theory expects one circuit role to attend to, on one probe sequence."""

    role: str
    title: str
    layer: int  # the layer the theory puts this role in
    cells: list[list[int]]  # [[query, key], ...]


class SnapshotView(BaseModel):
    """One probe sequence's attention at one step: every layer and head, causal half only.

    ``attention[layer][head][q]`` holds the weights of query position ``q`` on keys ``0..q``
    (a ragged lower triangle, 3 decimals), over the sequence's real tokens only.
    """

    model_config = ConfigDict(populate_by_name=True)

    run_id: int
    step: int
    steps: list[int]  # every snapshot step of the run, for the slider
    probe: int  # index into the probe set
    length: int  # input length L of this probe sequence
    lengths: list[int]  # the input length of every probe sequence (index = probe)
    tokens: list[int]
    labels: list[str]  # one text label per position: "[parity]", "x1=0", "EoI", "y1=1", ...
    n_layers: int
    n_heads: int
    attention: list[list[list[list[float]]]] = Field(description="[layer][head][query][key <= query]")
    expected: list[ExpectedCells]


class Created(BaseModel):
    """A queued run (201), or the earlier run of the same idempotency key (200)."""

    id: int
    url: str
    job_id: int
    created: bool


class JobAction(BaseModel):
    """The state of a run after cancel or retry."""

    id: int
    status: str
    job_id: int
    job_status: str


class ErrorBody(BaseModel):
    """A 4xx other than bad input: one sentence."""

    detail: str


class FieldError(BaseModel):
    field: str  # "d_model", "overrides.lr", "init_from"
    msg: str
    loc: list[str] = []
    type: str = "value_error"


class ValidationErrorBody(BaseModel):
    """Bad input (422), from a request FastAPI rejects or a spec ``core.specs`` rejects: one entry per problem."""

    detail: list[FieldError]


class BudgetView(BaseModel):
    """``core.specs.estimate_budget`` of a spec, with the numbers a person reads."""

    n_params: int
    train_bytes: int
    snapshot_bytes: int
    est_seconds_cpu: float
    flops_per_step: int
    tokens_per_step: int
    text: str  # "0.81 M parameters · 310 MB to train · about 7 min on a CPU"


class FigureSet(BaseModel):
    """The run page's plotly figure dicts, by the id of the element that draws each."""

    figures: dict[str, dict[str, Any]]
