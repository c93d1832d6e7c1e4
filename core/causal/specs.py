"""What an intervention job does: ``InterventionSpec``, validated like a run spec (extra keys refused).

One spec, one kind, several variants and targets; each (step, variant, target) becomes one stored
result, keyed (run, step, intervention, target):

| kind | variants (default: all but ``run``) | intervention label | target label |
| --- | --- | --- | --- |
| ``ablate`` | ``zero``, ``mean``, ``resample`` (the head's output, hook_z) | ``ablate/zero`` | ``L1H3`` |
| ``edge`` | ``renorm``, ``raw`` (remove the role's edge from the pattern) | ``edge/eoi/renorm`` | ``L0H*`` |
| ``pattern`` | ``ideal``, ``shift`` (key + ``shift``), ``run`` (``source_run``'s pattern) | ``pattern/shift-2`` | ``L0H3+L1H3`` |
| ``activation_patch`` | the hook sites ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out`` | ``patch/resid_post/accuracy`` | ``len16`` |
| ``probe`` | the targets ``eoi_position``, ``length``, ``t``, ``y_prev``, ``x_t`` (at ``layer``, ``site``) | ``probe/x_t`` | ``blocks.1.hook_resid_mid`` |

Heads are ``L{layer}H{head}``, or ``L{layer}H*`` for every head of a layer; none given means the
run's circuit heads (the summary's best head per role). ``together`` applies all heads in one
intervention (one result) instead of one result per head. ``role`` says which edge or ideal map a
head gets (``auto``: layer 0 the EoI locator's, deeper layers the iteration head's).
``steps``: one recorded step, ``last`` (the default), or ``all`` (every snapshot step: a curve
over training). Evaluations use the test split, ``rows_per_len`` rows of each length.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.specs.errors import SpecError

KINDS = ("ablate", "edge", "pattern", "activation_patch", "probe")
PATCH_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")  # = core.ml.patching.PATCH_SITES
PROBE_TARGETS = ("eoi_position", "length", "t", "y_prev", "x_t")  # = core.ml.probes.TARGETS
PROBE_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mlp_post")
VARIANTS = {
    "ablate": ("zero", "mean", "resample"),
    "edge": ("renorm", "raw"),
    "pattern": ("ideal", "shift", "run"),
    "activation_patch": PATCH_SITES,
    "probe": PROBE_TARGETS,
}
DEFAULT_VARIANTS = {"ablate": ("zero", "mean", "resample"), "edge": ("renorm", "raw"), "pattern": ("ideal",),
                    "activation_patch": ("resid_post",), "probe": ("eoi_position", "t", "y_prev", "x_t")}
ROLE_SHORT = {"eoi_locator": "eoi", "iteration": "iteration"}
HEAD = re.compile(r"^L(\d{1,2})H(\d{1,2}|\*)$")


class InterventionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)

    kind: Literal["ablate", "edge", "pattern", "activation_patch", "probe"]
    variants: list[str] = Field(default_factory=list, max_length=8)  # empty: DEFAULT_VARIANTS[kind]
    heads: list[str] = Field(default_factory=list, max_length=32)  # "L1H3", "L0H*"; empty: the circuit heads
    together: bool = False
    role: Literal["auto", "eoi_locator", "iteration"] = "auto"
    shift: int = Field(-2, ge=-64, le=64)  # pattern/shift: EoI + shift, or x_{t + shift}
    source_run: int | None = Field(None, ge=1)  # pattern/run: whose pattern
    source_step: int | None = Field(None, ge=0)  # pattern/run: at which step (None: its last)
    layer: int | None = Field(None, ge=0, le=11)  # probe: the layer of the hook site
    site: Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mlp_post"] = "resid_mid"  # probe
    length: int | None = Field(None, ge=1, le=64)  # activation_patch: the input length (None: max_len)
    metric: Literal["accuracy", "logit_diff"] = "accuracy"  # activation_patch
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
        known = VARIANTS[self.kind]
        for variant in self.variants:
            if variant not in known:
                raise ValueError(f"variants: {variant!r} is not a {self.kind} variant; known: {', '.join(known)}")
        if "run" in self.variants and self.source_run is None:
            raise ValueError("source_run: the 'run' pattern variant needs a source run")
        if "shift" in self.variants and self.shift == 0:
            raise ValueError("shift: must not be 0 for the 'shift' variant")
        if self.kind == "probe" and self.layer is None:
            raise ValueError("layer: a probe needs the layer of its hook site")
        return self

    @property
    def chosen_variants(self) -> tuple[str, ...]:
        return tuple(self.variants) or DEFAULT_VARIANTS[self.kind]

    @classmethod
    def parse(cls, data: dict) -> InterventionSpec:
        """Validate ``data``; raise SpecError (``FIELD: message`` lines) on bad input."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_errors(exc)) from None


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "spec"
        message = error["msg"].removeprefix("Value error, ")
        if ":" in message and field == "spec":  # model-level checks name their field first
            field, message = (part.strip() for part in message.split(":", 1))
        out.append((field, message))
    return out


def parse_head(label: str, n_heads: int) -> list[tuple[int, int]]:
    """``"L1H3" -> [(1, 3)]``; ``"L0H*" -> [(0, 0), ..., (0, n_heads - 1)]``."""
    match = HEAD.match(label)
    if match is None:
        raise ValueError(f"{label!r} is not a head label")
    layer = int(match[1])
    return [(layer, h) for h in range(n_heads)] if match[2] == "*" else [(layer, int(match[2]))]


def role_for(spec: InterventionSpec, layer: int) -> str:
    """The role whose edge or ideal map a head of ``layer`` gets."""
    if spec.role != "auto":
        return spec.role
    return "eoi_locator" if layer == 0 else "iteration"


def intervention_label(spec: InterventionSpec, variant: str, role: str | None = None) -> str:
    """The stored ``intervention`` column: ``ablate/zero``, ``edge/eoi/renorm``, ``pattern/shift-2`` ...
    (an edge removed from heads of both roles at once is ``edge/circuit/...``: pass role None)."""
    if spec.kind == "ablate":
        return f"ablate/{variant}"
    if spec.kind == "edge":
        return f"edge/{ROLE_SHORT[role] if role else 'circuit'}/{variant}"
    if spec.kind == "pattern":
        if variant == "shift":
            return f"pattern/shift{spec.shift:+d}"
        if variant == "run":
            return f"pattern/run{spec.source_run}@{'last' if spec.source_step is None else spec.source_step}"
        return "pattern/ideal"
    if spec.kind == "activation_patch":
        return f"patch/{variant}/{spec.metric}"
    return f"probe/{variant}"
