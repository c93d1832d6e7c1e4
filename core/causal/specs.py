"""What an intervention job does: ``InterventionSpec``, validated like a run spec (extra keys refused).

One spec, one kind, several variants and targets; each (step, variant, target) becomes one stored
result, keyed (run, step, intervention, target). The kinds, their variants and their labels are one
table, ``core.causal.kinds.KINDS``; this spec accepts exactly its kinds and variants.

Heads are ``L{layer}H{head}``, or ``L{layer}H*`` for every head of a layer; none given means the
run's circuit heads (the summary's best head per role). ``together`` applies all heads in one
intervention (one result) instead of one result per head. ``role`` says which edge or ideal map a
head gets (``auto``: layer 0 the EoI locator's, deeper layers the iteration head's).
``steps``: one recorded step, ``last`` (the default), or ``all`` (every snapshot step: a curve
over training). Evaluations use the test split, ``rows_per_len`` rows of each length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.causal.kinds import KINDS
from core.names import (
    ACTIVATION_PATCH,
    INTERVENTION_KINDS,
    PATCH_METRICS,
    PATTERN,
    PROBE,
    PROBE_SITES,
    ROLES,
    role_of_layer,
)
from core.specs.errors import SpecError, render

AUTO = "auto"  # role: the theory's role for the head's layer (core.names.role_of_layer)
ROLE_CHOICES = (AUTO, *ROLES)
HEAD = re.compile(r"^L(\d{1,2})H(\d{1,2}|\*)$")  # a head (core.names.head_label) or every head of a layer


class InterventionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)

    kind: Literal[INTERVENTION_KINDS]
    variants: list[str] = Field(default_factory=list, max_length=8)  # empty: KINDS[kind].defaults
    heads: list[str] = Field(default_factory=list, max_length=32)  # "L1H3", "L0H*"; empty: the circuit heads
    together: bool = False
    role: Literal[ROLE_CHOICES] = AUTO
    shift: int = Field(-2, ge=-64, le=64)  # pattern/shift: EoI + shift, or x_{t + shift}
    source_run: int | None = Field(None, ge=1)  # pattern/run: whose pattern
    source_step: int | None = Field(None, ge=0)  # pattern/run: at which step (None: its last)
    layer: int | None = Field(None, ge=0, le=11)  # probe: the layer of the hook site
    site: Literal[PROBE_SITES] = "resid_mid"  # probe
    length: int | None = Field(None, ge=1, le=64)  # activation_patch: the input length (None: max_len)
    metric: Literal[PATCH_METRICS] = "accuracy"  # activation_patch
    steps: int | Literal["last", "all"] = "last"
    rows_per_len: int = Field(256, ge=1, le=4096)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("steps")
    @classmethod
    def _step_not_negative(cls, value):
        if isinstance(value, int) and value < 0:
            raise ValueError("must be a step >= 0, 'last' or 'all'")
        return value

    @field_validator("heads")
    @classmethod
    def _head_labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not HEAD.match(label):
                raise ValueError(f"{label!r} is not a head: L{{layer}}H{{head}} or L{{layer}}H*, e.g. L1H0")
        return value

    @model_validator(mode="after")
    def _fits_the_kind(self) -> InterventionSpec:
        known = KINDS[self.kind].variants
        for variant in self.variants:
            if variant not in known:
                raise ValueError(f"variants: {variant!r} is not {'an' if self.kind[0] in 'aeiou' else 'a'} {self.kind} "
                                 f"variant; known: {', '.join(known)}")
        if "run" in self.variants and self.source_run is None:
            raise ValueError("source_run: the 'run' pattern variant needs a source run")
        if "shift" in self.variants and self.shift == 0:
            raise ValueError("shift: must not be 0 for the 'shift' variant")
        if self.kind == PROBE and self.layer is None:
            raise ValueError("layer: a probe needs the layer of its hook site")
        return self

    @property
    def chosen_variants(self) -> tuple[str, ...]:
        return tuple(self.variants) or KINDS[self.kind].defaults

    @classmethod
    def parse(cls, data: dict) -> InterventionSpec:
        """Validate ``data``; raise SpecError (``FIELD: message`` lines) on bad input."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_errors(exc)) from None


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    """One (field, message) per pydantic error, worded as a run spec's are (``core.specs.errors.render``:
    "must be >= 1 (got 0)"); a model-level check names its field first ("variants: ...")."""
    out: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "spec"  # every field is top-level; a list item is its list
        if error["type"] == "value_error":
            message = str(error.get("ctx", {}).get("error", error["msg"])).removeprefix("Value error, ")
            if ":" in message and field == "spec":  # model-level checks name their field first
                field, message = (part.strip() for part in message.split(":", 1))
        elif field == "steps":  # a union: one sentence for both of its members
            message = f"must be a step >= 0, 'last' or 'all' (got {error['input']!r})"
        else:
            message = render(error)[1]
        out.setdefault(field, message)
    return list(out.items())


def parse_for_run(data: Any, *, run_spec: Mapping[str, Any], weights_steps: Sequence[int],
                  summary: Mapping[str, Any] | None, source_spec: Mapping[str, Any] | None = None) -> InterventionSpec:
    """``InterventionSpec.parse`` then ``check_for_run``, naming every bad field at once: when some
    value does not parse, the heads that do are still checked against the run (``L9H9`` is named
    beside a bad ``steps``, not only once ``steps`` is fixed)."""
    try:
        spec = InterventionSpec.parse(data)
    except SpecError as exc:
        errors = list(exc.errors)
        heads = data.get("heads") if isinstance(data, dict) else None
        if isinstance(heads, list) and not any(field == "heads" for field, _ in errors):
            labels = [label for label in heads if isinstance(label, str) and HEAD.match(label.strip())]
            errors += _head_errors([label.strip() for label in labels], run_spec)
        raise SpecError(errors) from None
    check_for_run(spec, run_spec=run_spec, weights_steps=weights_steps, summary=summary, source_spec=source_spec)
    return spec


def _shape(run_spec: Mapping[str, Any]) -> tuple[int, int, str]:
    n_layers, n_heads = int(run_spec.get("n_layers") or 1), int(run_spec.get("n_heads") or 1)
    return n_layers, n_heads, (f"this run has {n_layers} layer{'s' if n_layers > 1 else ''} (L0..L{n_layers - 1}) of "
                               f"{n_heads} head{'s' if n_heads > 1 else ''} (H0..H{n_heads - 1})")


def _head_errors(labels: Sequence[str], run_spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    n_layers, n_heads, shape = _shape(run_spec)
    errors = []
    for label in labels:
        match = HEAD.match(label)
        if int(match[1]) >= n_layers or (match[2] != "*" and int(match[2]) >= n_heads):
            errors.append(("heads", f"{label} is not a head of this run: {shape}"))
    return errors[:1]  # one message a field


def check_for_run(spec: InterventionSpec, *, run_spec: Mapping[str, Any], weights_steps: Sequence[int],
                  summary: Mapping[str, Any] | None, source_spec: Mapping[str, Any] | None = None) -> None:
    """Raise SpecError naming every field of ``spec`` that does not fit the run it targets, before a job
    is queued: heads and a probe's layer the model has, a recorded step, a length its test split holds,
    an existing source run of the same shape. ``run_spec`` is the run's flat spec, ``weights_steps`` its
    weights checkpoint steps, ``summary`` its summary (so far), ``source_spec`` the source run's flat
    spec (None: there is no such run)."""
    n_layers, n_heads, shape = _shape(run_spec)
    errors: list[tuple[str, str]] = []
    if KINDS[spec.kind].on_heads:
        errors += _head_errors(spec.heads, run_spec)
        if not spec.heads and not (summary or {}).get("heads"):
            errors.append(("heads", "the run has no circuit heads in its summary yet; name heads, e.g. L1H0"))
    if spec.kind == PROBE and spec.layer is not None and spec.layer >= n_layers:
        errors.append(("layer", f"must be below n_layers: {shape} (got {spec.layer})"))
    if not weights_steps:
        errors.append(("steps", "the run has no weights checkpoints yet"))
    elif isinstance(spec.steps, int) and spec.steps not in weights_steps:
        shown = ", ".join(str(step) for step in sorted(weights_steps)[-12:])
        errors.append(("steps", f"no weights checkpoint at step {spec.steps}; recorded steps: {shown}"))
    longest = max(int(run_spec.get("max_len") or 1), int(run_spec.get("test_max_len") or 0))
    if spec.kind == ACTIVATION_PATCH and spec.length is not None and spec.length > longest:
        errors.append(("length", f"must be at most {longest}, the run's longest test length (got {spec.length})"))
    if "run" in spec.chosen_variants and spec.kind == PATTERN and spec.source_run is not None:
        if source_spec is None:
            errors.append(("source_run", f"there is no run {spec.source_run}"))
        elif (int(source_spec.get("n_layers") or 1), int(source_spec.get("n_heads") or 1)) != (n_layers, n_heads):
            errors.append(("source_run", f"run {spec.source_run} has another shape "
                                         f"({source_spec.get('n_layers')} layers of {source_spec.get('n_heads')} heads): {shape}"))
    if errors:
        raise SpecError(errors)


def parse_head(label: str, n_heads: int) -> list[tuple[int, int]]:
    """``"L1H3" -> [(1, 3)]``; ``"L0H*" -> [(0, 0), ..., (0, n_heads - 1)]``."""
    match = HEAD.match(label)
    if match is None:
        raise ValueError(f"{label!r} is not a head label")
    layer = int(match[1])
    return [(layer, h) for h in range(n_heads)] if match[2] == "*" else [(layer, int(match[2]))]


def role_for(spec: InterventionSpec, layer: int) -> str:
    """The role whose edge or ideal map a head of ``layer`` gets."""
    return role_of_layer(layer) if spec.role == AUTO else spec.role


def intervention_label(spec: InterventionSpec, variant: str, role: str | None = None) -> str:
    """The stored ``intervention`` column (``core.causal.kinds.Kind.label``): ``ablate/zero``,
    ``edge/eoi/renorm``, ``pattern/shift-2`` ... (``edge/circuit/...`` for heads of both roles: role None)."""
    return KINDS[spec.kind].label(spec, variant, role)
