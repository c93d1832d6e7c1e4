"""New runs from the form or the API: validate the spec, check ``init_from``, queue, dispatch after commit.

    request = SubmitRequest(preset="fast-polynomial", overrides={"seed": 3}, name="s3")
    queued = submit(engine, settings, request)      # Queued(run_id, job_id, created); raises SpecError

A request names a preset (updated by ``overrides``) or gives a whole flat ``spec``. Every problem
comes back as a ``core.specs.SpecError`` whose ``.errors`` are (field, message) pairs: the API
answers 422 with them, the form shows each beside its field. Nothing is queued unless the whole
request is valid. The same ``idempotency_key`` always gives the same run (a double click, a retried
POST), even when two requests race: the loser of the unique-key race reads the winner's run.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from core.db.session import session_scope
from core.presets import get_preset
from core.settings import Settings
from core.specs.budget import estimate_budget
from core.specs.errors import SpecError
from core.specs.run import RunSpec
from core.submit import Queued, check_init_from, dispatch, submit_run
from server.views.schemas import BudgetView

MAX_TAGS, MAX_TAG_CHARS = 20, 50


class SubmitRequest(BaseModel):
    """``POST /api/runs``: a preset and overrides, or a whole flat spec; a name, tags, notes, a key."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(None, description="a preset name (core.presets), e.g. fast-polynomial")
    overrides: dict[str, Any] = Field(default_factory=dict, description="flat spec keys over the preset or spec")
    spec: dict[str, Any] | None = Field(None, description="a whole flat spec, instead of a preset")
    name: str | None = Field(None, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    notes: str = Field("", max_length=10_000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=100)


def resolve_spec(request: SubmitRequest) -> RunSpec:
    """The validated RunSpec a request asks for; SpecError names every bad field."""
    if request.preset is not None and request.spec is not None:
        raise SpecError([("spec", "give either a preset (with overrides) or a whole spec, not both")])
    if request.spec is not None:
        base = dict(request.spec)
    elif request.preset is not None:
        base = get_preset(request.preset)
    else:
        raise SpecError([("preset", "is required (or give a whole flat spec)")])
    return RunSpec.from_flat({**base, **request.overrides})


def check_tags(tags: list[str]) -> list[str]:
    cleaned = [tag.strip() for tag in tags if tag.strip()]
    bad = [tag for tag in cleaned if len(tag) > MAX_TAG_CHARS]
    if bad:
        raise SpecError([("tags", f"a tag has at most {MAX_TAG_CHARS} characters (got {bad[0][:60]!r}...)")])
    return list(dict.fromkeys(cleaned))


def problems(engine: Engine, request: SubmitRequest) -> list[tuple[str, str]]:
    """Every (field, message) that would stop ``submit``, without queueing anything."""
    found: list[tuple[str, str]] = []
    for check in (lambda: resolve_spec(request), lambda: check_tags(request.tags)):
        try:
            check()
        except SpecError as exc:
            found += exc.errors
    init_from = {**(request.spec or {}), **request.overrides}.get("init_from")
    if isinstance(init_from, str) and not any(field == "init_from" for field, _ in found):
        try:
            with session_scope(engine, readonly=True) as session:
                check_init_from(session, init_from)
        except SpecError as exc:
            found += exc.errors
    return found


def submit(engine: Engine, settings: Settings, request: SubmitRequest, *, preset: str | None = None) -> Queued:
    """Validate, queue (one transaction), then dispatch the job; raises SpecError on bad input.

    ``preset`` records which preset a whole spec started from (the form sends whole specs).
    """
    spec = resolve_spec(request)
    tags = check_tags(request.tags)
    try:
        with session_scope(engine) as session:
            check_init_from(session, spec.train.init_from, spec=spec)
            queued = submit_run(session, spec=spec, name=(request.name or "").strip() or None, preset=request.preset or preset,
                                key=request.idempotency_key, tags=tags, notes=request.notes)
    except IntegrityError:
        if request.idempotency_key is None:
            raise
        with session_scope(engine) as session:  # a concurrent request with the same key won the race
            queued = submit_run(session, spec=spec, key=request.idempotency_key,
                                name=(request.name or "").strip() or None)
        if queued.created:
            raise
    if queued.created:
        dispatch(settings, [queued.job_id])  # after the commit, never before
    return queued


def budget(spec: RunSpec) -> BudgetView:
    """The estimate shown before submit, with a one-line reading of it."""
    b = estimate_budget(spec)
    text = (f"{b.n_params / 1e6:.3g} M parameters · {_bytes(b.train_bytes)} to train · "
            f"{_bytes(b.snapshot_bytes)} of snapshots · about {_duration(b.est_seconds_cpu)} on a CPU")
    return BudgetView(n_params=b.n_params, train_bytes=b.train_bytes, snapshot_bytes=b.snapshot_bytes,
                      est_seconds_cpu=b.est_seconds_cpu, flops_per_step=b.flops_per_step,
                      tokens_per_step=b.tokens_per_step, text=text)


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
