"""The New-run form: its fields (every flat spec key, with its bound) and reading a posted form back.

    sections = form_sections(values, errors)           # for new_run.html: [(title, [FormField, ...]), ...]
    request, errors, flat = parse_form(form)            # a SubmitRequest, {field: message}, the typed values
    errors = pair_errors(errors, flat)                  # a problem of two fields named on both

The form always holds a whole flat spec (a preset only fills it in), so what is posted is exactly
what runs. Text comes back typed by the field's annotation (``core.specs.parse_set``); a blank
optional field means None, and an integer field takes a whole number in float notation (``1e9``).
``init_from`` is two inputs (run, step) and ``trainable`` a choice of
all / second-layer MLP / chosen modules, joined here into the spec's own keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt

from core.names import PROBLEM_NAMES
from core.specs.errors import SpecError
from core.specs.overrides import parse_set
from core.specs.run import FLAT_FIELDS, SECTIONS
from server.submit import SubmitRequest

SECTION_TITLES = {"problem": "Problem (data)", "model": "Model", "train": "Training"}
CUSTOM_FIELDS = ("init_from", "trainable")  # drawn by the template's own inputs
PROBLEM_CHOICES = [*PROBLEM_NAMES, *(f"{a}+{b}" for a, b in itertools.permutations(PROBLEM_NAMES, 2))]
BLANK_MEANS = {"d_mlp": "4 x d_model", "test_max_len": "no longer test lengths", "eval_rows_per_len": "whole splits",
               "device": "the worker chooses"}
TRAINABLE_CHOICES = {"all": "everything", "mlp2": "second-layer MLP only (blocks.1.mlp)", "custom": "chosen modules"}


@dataclass
class FormField:
    key: str
    kind: str  # "int", "float", "bool", "choice", "text"
    value: str  # as the input shows it
    bound: str  # "1..64", "> 0, <= 1", "polynomial, parity, ..." ; what the field accepts
    optional: bool  # blank means None
    choices: list[str] = field(default_factory=list)
    error: str | None = None


def _bound(metadata: list) -> str:
    parts = []
    lo = next((m for m in metadata if isinstance(m, (Ge, Gt))), None)
    hi = next((m for m in metadata if isinstance(m, (Le, Lt))), None)
    if lo is not None and hi is not None and isinstance(lo, Ge) and isinstance(hi, Le):
        return f"{_number(lo.ge)}..{_number(hi.le)}"
    if lo is not None:
        parts.append(f">= {_number(lo.ge)}" if isinstance(lo, Ge) else f"> {_number(lo.gt)}")
    if hi is not None:
        parts.append(f"<= {_number(hi.le)}" if isinstance(hi, Le) else f"< {_number(hi.lt)}")
    return ", ".join(parts)


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and value >= 10_000 else str(value)


def _kind(annotation: Any) -> tuple[str, list[str], bool]:
    args = get_args(annotation)
    optional = type(None) in args
    inner = next((a for a in args if a is not type(None)), annotation) if args and get_origin(annotation) is not Literal else annotation
    if get_origin(inner) is Literal:
        return "choice", [str(v) for v in get_args(inner)], optional
    return {bool: "bool", int: "int", float: "float"}.get(inner, "text"), [], optional


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def form_sections(values: Mapping[str, Any], errors: Mapping[str, str]) -> list[tuple[str, list[FormField]]]:
    """Every flat spec key but the custom ones, grouped by spec, with its current value and error."""
    sections: list[tuple[str, list[FormField]]] = []
    for section in SECTIONS:
        fields = []
        for key, (owner, info) in FLAT_FIELDS.items():
            if owner != section or key in CUSTOM_FIELDS:
                continue
            kind, choices, optional = _kind(info.annotation)
            bound = _bound(list(info.metadata))
            if key == "problem":
                kind, choices, bound = "choice", PROBLEM_CHOICES, "one problem or a mixture a+b"
            elif kind == "choice":
                bound = ", ".join(choices)
            elif key == "device":
                bound = "cpu, cuda or cuda:N"
            if optional and kind != "choice":
                bound = f"{bound}; blank: {BLANK_MEANS.get(key, 'none')}"
            raw = values.get(key, info.default)
            fields.append(FormField(key=key, kind=kind, value=_shown(raw), bound=bound, optional=optional,
                                    choices=choices, error=errors.get(key)))
        sections.append((SECTION_TITLES[section], fields))
    return sections


def init_values(spec: Mapping[str, Any]) -> dict[str, str]:
    """The custom inputs' values for a flat spec: init_run, init_step, trainable_choice, trainable_modules."""
    run, _, step = (spec.get("init_from") or "").partition("@")
    trainable = spec.get("trainable") or "all"
    choice = trainable if trainable in ("all", "mlp2") else "custom"
    return {"init_run": run, "init_step": step, "trainable_choice": choice,
            "trainable_modules": trainable if choice == "custom" else ""}


def whole_number(text: str) -> str:
    """An integer field's text with a whole number in float notation written out: "1e9" -> "1000000000",
    "2.0e3" -> "2000"; anything else as it was (the field's own check then says what is wrong)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and not text.lstrip("+-").isdigit() else text


def pair_errors(errors: dict[str, str], flat: Mapping[str, Any]) -> dict[str, str]:
    """Errors that two fields make together, named on both: d_model not divisible by n_heads is as much
    n_heads' problem (the one-field checks leave it on d_model). Returns ``errors`` with the pairs added."""
    if "divisible by n_heads" in errors.get("d_model", "") and "n_heads" not in errors:
        errors["n_heads"] = (f"must divide d_model ({flat.get('d_model')}) evenly: change n_heads or d_model "
                             f"(got {flat.get('n_heads')!r})")
    return errors


def parse_form(form: Mapping[str, str]) -> tuple[SubmitRequest, dict[str, str], dict[str, Any]]:
    """A posted form -> (request, errors by field, the typed flat spec as far as it parsed).

    With errors, ``request`` holds the fields that did parse (the others at their defaults), to be
    checked for more problems but never submitted.
    """
    flat: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, (_, info) in FLAT_FIELDS.items():
        if key in CUSTOM_FIELDS or key not in form:
            continue
        text = str(form[key]).strip()
        kind, _, optional = _kind(info.annotation)
        if text == "" and optional:
            flat[key] = None
            continue
        if kind == "int":
            text = whole_number(text)
        try:
            flat.update(parse_set([f"{key}={text}"]))
        except SpecError as exc:
            errors.update(dict(exc.errors))
    run, step = str(form.get("init_run", "")).strip(), str(form.get("init_step", "")).strip()
    if run or step:
        if run.isdigit() and step.isdigit():
            flat["init_from"] = f"{int(run)}@{int(step)}"
        else:
            errors["init_from"] = f"give a run id and a step, both whole numbers (got run {run!r}, step {step!r})"
    choice = str(form.get("trainable_choice", "all"))
    flat["trainable"] = str(form.get("trainable_modules", "")).strip() if choice == "custom" else choice
    tags = [tag.strip() for tag in str(form.get("tags", "")).split(",") if tag.strip()]
    meta = {"name": str(form.get("name", "")).strip()[:200] or None, "tags": tags,
            "notes": str(form.get("notes", ""))[:10_000], "idempotency_key": str(form.get("idempotency_key", "")).strip()[:100] or None}
    if errors:  # what did parse is still checked, so every bad field is named at once (server.submit.problems)
        return SubmitRequest(spec={k: v for k, v in flat.items() if k not in errors}, **meta), errors, flat
    return SubmitRequest(spec=flat, **meta), errors, flat
