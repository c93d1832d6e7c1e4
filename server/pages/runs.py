"""The runs pages: the runs list (``/``), a run (``/runs/{id}``) and the New-run form (``/runs/new``).

Each page renders the same view models the JSON API returns (``server.views``), so ``/runs/7`` and
``/api/runs/7`` always agree. Page state lives in the query string (``?step=250&probe=3&layer=1&head=0``)
and the page's script keeps it there (``history.replaceState``), so a copied link reopens the same view.
Reads are reachable through share links (``access.url`` prefixes every link); the form and its POST are
the owner's (``write``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from core.db import crud
from core.names import HEADLINE_SCORE, ROLE_TITLES, SCORE_PATTERN, SCORES
from core.studies import STUDIES
from core.presets import PRESET_TITLES, PRESETS
from core.specs.errors import SpecError
from core.specs.run import FLAT_FIELDS, RunSpec
from server import cache, figures
from server.access import Access
from server.deps import CurrentAccess, OwnerAccess, QueryId, ReadSession, RunId
from server.forms import PROBLEM_CHOICES, TRAINABLE_CHOICES, form_sections, init_values, pair_errors, parse_form
from server.views import runs as views
from server.submit import budget, problems, submit

read = APIRouter(include_in_schema=False)
write = APIRouter(include_in_schema=False)

STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
SCORE_NAMES = (HEADLINE_SCORE, *(name for name in SCORES if name != HEADLINE_SCORE))  # the headline first
DEFAULT_PRESET = "fast-polynomial"


def _page(request: Request, template: str, access: Access, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates = request.app.state.templates
    return templates.TemplateResponse(request, template, {"access": access, "api_base": access.url("/api"),
                                                          **context}, status_code=status_code)


# ---------------------------------------------------------------- the runs list


@read.get("/", response_class=HTMLResponse)
def runs_page(request: Request, access: CurrentAccess,
              session: ReadSession,
              problem: Annotated[str | None, Query(max_length=100)] = None,
              status: Annotated[str | None, Query(max_length=20)] = None,
              tag: Annotated[str | None, Query(max_length=50)] = None,
              q: Annotated[str | None, Query(max_length=200)] = None,
              sort: Annotated[str, Query(pattern="^-?(created|name|status|step|acc)$")] = "-created",
              limit: Annotated[int, Query(ge=1, le=views.MAX_LIMIT)] = 50,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> HTMLResponse:
    status = status if status in STATUSES else None
    query = views.RunQuery(problem=problem or None, status=status, tag=tag or None, q=q or None, sort=sort,
                           limit=limit, offset=offset, run_ids=access.run_ids)
    page = views.list_runs(session, query=query)
    filters = {"problem": problem or "", "status": status or "", "tag": tag or "", "q": q or "", "sort": sort,
               "limit": limit}
    return _page(request, "runs.html", access, page=page, filters=filters, statuses=STATUSES,
                 problems=PROBLEM_CHOICES)


# ---------------------------------------------------------------- one run


@read.get("/runs/{run_id:digits}", response_class=HTMLResponse)
def run_page(request: Request, run_id: RunId, access: CurrentAccess,
             session: ReadSession,
             step: Annotated[int | None, Query(ge=0)] = None,
             probe: Annotated[int | None, Query(ge=0)] = None,
             length: Annotated[int | None, Query(ge=1)] = None,
             layer: Annotated[int | None, Query(ge=0)] = None,
             head: Annotated[int | None, Query(ge=0)] = None,
             score: Annotated[str, Query(pattern=SCORE_PATTERN)] = "peaky_thres") -> Response:
    access.require_run(run_id)
    return cache.finished(request, session, run_id=run_id,  # a finished run: rendered once, then from memory
                          render=lambda: _run_page(request, session, run_id, access, step=step, probe=probe,
                                                   length=length, layer=layer, head=head, score=score))


def _run_page(request: Request, session: Session, run_id: int, access: Access, *, step, probe, length, layer, head,
              score: str) -> HTMLResponse:
    run = views.run_detail(session, run_id=run_id, access=access)  # NotFound: the not-found page (server.errors)
    rows = views.figure_rows(session, run_id=run_id, score=score)
    state, snapshot = _viewer_state(session, run, step=step, probe=probe, length=length, layer=layer, head=head)
    focus = (figures.attention_figure(snapshot, layer=state["layer"], head=state["head"]) if snapshot else None)
    state["score"] = score
    stall_seconds = request.app.state.settings.stall_seconds
    page_data = {"api_base": access.url("/api"), "readonly": access.readonly, "state": state,
                 "stall_seconds": stall_seconds, "stall_note_after_s": views.STALL_NOTE_AFTER_S,
                 "run": {"id": run.id, "status": run.status, "terminal": run.terminal, "snapshot_steps": run.snapshot_steps,
                         "verdict": run.summary.get("verdict")},
                 "snapshot": snapshot.model_dump(mode="json") if snapshot else None}
    return _page(request, "run.html", access, run=run, figures=figures.run_figures(rows, run.summary, score=score),
                 snapshot=snapshot, focus=focus, state=state, scores=SCORE_NAMES, role_titles=ROLE_TITLES,
                 page_data=page_data, stall=views.stall_note(run.progress.silent_s, stall_seconds=stall_seconds))


def _viewer_state(session: Session, run, *, step, probe, length, layer, head) -> tuple[dict, Any]:
    """The attention viewer's state, defaults filled in and out-of-range values pulled back in range."""
    steps = run.snapshot_steps
    n_layers, n_heads = int(run.config.get("n_layers", 1)), int(run.config.get("n_heads", 1))
    iteration = run.summary.get("heads", {}).get("iteration") or {}
    layer = layer if layer is not None and layer < n_layers else iteration.get("layer", n_layers - 1)
    head = head if head is not None and head < n_heads else iteration.get("head", 0)
    state = {"step": None, "probe": 0, "length": None, "layer": layer, "head": head}
    if not steps:
        return state, None
    step = steps[-1] if step is None else min(steps, key=lambda s: (abs(s - step), s))  # the nearest snapshot
    lengths = views.snapshot_lengths(session, run_id=run.id, step=step)
    if probe is None or probe >= len(lengths) or (length is not None and lengths[probe] != length):
        wanted = length if length in lengths else min(max(lengths), 8)
        probe = next((i for i, n in enumerate(lengths) if n == wanted), 0)
    snapshot = views.snapshot_view(session, run_id=run.id, step=step, probe=probe)  # one view, the chosen probe
    state.update(step=step, probe=probe, length=snapshot.length)
    return state, snapshot


# ---------------------------------------------------------------- the New-run form


@write.get("/runs/new", response_class=HTMLResponse)
def new_run_page(request: Request, access: OwnerAccess,
                 session: ReadSession,
                 preset: Annotated[str | None, Query(max_length=100)] = None,
                 copy: QueryId = None,  # start from this run's spec
                 init_run: QueryId = None,
                 init_step: Annotated[int | None, Query(ge=0)] = None) -> HTMLResponse:
    preset = preset if preset in PRESETS else DEFAULT_PRESET
    values = preset_values(preset)
    name = ""
    if copy is not None and (source := crud.get_run(session, run_id=copy)) is not None:
        values, preset, name = dict(source.spec), source.preset or "", f"copy of {source.name or f'run {copy}'}"
    if init_run is not None:
        values["init_from"] = f"{init_run}@{init_step or 0}"
    return _form(request, access, values=values, preset=preset, meta={"name": name, "tags": "", "notes": ""},
                 errors={})


def preset_values(name: str) -> dict[str, Any]:
    """Every flat key of the form for a preset: the spec defaults, then the preset's values."""
    return {**{key: info.default for key, (_, info) in FLAT_FIELDS.items()}, **PRESETS[name]}


def _form(request: Request, access: Access, *, values: dict, preset: str, meta: dict, errors: dict,
          status_code: int = 200) -> HTMLResponse:
    try:
        estimate = budget(RunSpec.from_flat(values)).text
    except (SpecError, TypeError):
        estimate = None
    sections = form_sections(values, errors)
    return _page(request, "new_run.html", access, status_code=status_code, sections=sections,
                 custom=init_values(values), errors=errors,
                 presets={name: preset_values(name) for name in PRESETS}, preset_titles=PRESET_TITLES,
                 preset=preset, meta=meta, estimate=estimate, trainable_choices=TRAINABLE_CHOICES,
                 idempotency_key=uuid.uuid4().hex, studies={name: study.title for name, study in STUDIES.items()},
                 numeric_keys=[f.key for _, fields in sections for f in fields if f.kind in ("int", "float")])


@write.post("/runs/new", response_class=HTMLResponse)
async def new_run_submit(request: Request, access: OwnerAccess) -> Response:
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    return await run_in_threadpool(_submit_form, request, access, form)  # the database work blocks


def _submit_form(request: Request, access: Access, form: dict[str, str]) -> Response:
    """Queue the posted run and redirect to it, or show the form again with every problem (422)."""
    parsed, errors, flat = parse_form(form)
    preset = form.get("preset") if form.get("preset") in PRESETS else None
    meta = {"name": form.get("name", ""), "tags": form.get("tags", ""), "notes": form.get("notes", "")}
    engine = request.app.state.engine
    for field, message in problems(engine, parsed):  # every bad field at once, "there is no run 99" too
        errors.setdefault(field, message)
    if not errors:
        try:
            queued = submit(engine, request.app.state.settings, parsed, preset=preset)
        except SpecError as exc:
            errors = {field: message for field, message in reversed(exc.errors)}  # the first message per field wins
        else:
            return RedirectResponse(access.url(f"/runs/{queued.run_id}"), status_code=303)
    errors = pair_errors(errors, flat)
    values = {**flat, **{key: form[key] for key in errors if key in form}}  # show what was typed
    return _form(request, access, values=values, preset=preset or "", meta=meta, errors=errors, status_code=422)
