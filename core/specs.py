"""The job contract: what a run is, as validated data, and what it will cost.

A run is three specs: the data (``ProblemSpec``), the network (``ModelSpec``) and the optimisation
(``TrainSpec``), gathered in ``RunSpec``. Outside Python a run is a *flat* dict whose keys are unique
across the three (``{"problem": "parity", "d_model": 64, "lr": 1e-3, ...}``): the same keys in
``circuitboard train --set``, the API's ``overrides``, the form and the stored run. So:

    spec = apply_overrides(get_preset("paper-parity"), parse_set(["d_model=64", "shuffle=true"]))
    RunSpec.from_flat(spec.to_flat()) == spec

Bad input raises :class:`SpecError` (a ValueError) whose message has one line per problem,
``FIELD: message (got VALUE)``, e.g. ``d_model: must be <= 2048 (got 65536)``; ``.errors`` holds
the same as (field, message) pairs for a 422 response.

Values are resolved once, at validation: ``d_mlp=None`` becomes ``4 * d_model``. Derived sizes
(``n_ctx``, ``d_head``) are properties and never part of the flat dict.
"""

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator

from core.names import BLOCK_MODULES, DEVICE, MIXTURE_SEPARATOR, PROBLEM_NAMES, TOP_MODULES, block_module

D_VOCAB = 64  # the paper's vocabulary; core.problems.tokens.VOCAB_SIZE says the same
MAX_LEN = 64  # the longest input length any problem spec may ask for
SEED_MAX = 2**32 - 1
MAX_STEPS = 10_000_000


class SpecError(ValueError):
    """Invalid spec input. ``str()`` is one ``FIELD: message`` line per error; ``.errors`` lists them."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(f"{field}: {message}" for field, message in self.errors))

    @classmethod
    def from_validation(cls, exc: ValidationError) -> "SpecError":
        """One readable line per pydantic error, named by the flat key it concerns."""
        return cls(_render(error) for error in exc.errors())


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True, validate_default=True
    )


# ---------------------------------------------------------------------------------------------- data


class ProblemSpec(_Spec):
    """Which sequences: the problem, the input lengths, how many rows of each, the probe set."""

    problem: str  # "polynomial" | "parity" | "binary_copy" | a mixture "a+b" of two distinct ones
    min_len: int = Field(1, ge=1, le=MAX_LEN)
    max_len: int = Field(16, ge=1, le=MAX_LEN)
    test_max_len: int | None = Field(None, ge=1, le=MAX_LEN)  # longer held-out test lengths, test split only
    n_train_per_len: int = Field(1024, ge=1, le=100_000)
    n_test_per_len: int = Field(1024, ge=1, le=100_000)
    data_mix: float = Field(0.5, ge=0.0, le=1.0)  # share of rows from a mixture's first problem
    data_seed: int = Field(0, ge=0, le=SEED_MAX)
    probe_per_len: int = Field(4, ge=1, le=64)  # probe-set sequences per length

    @field_validator("problem")
    @classmethod
    def _known_problem(cls, value: str) -> str:
        parts = value.split(MIXTURE_SEPARATOR)
        if all(p in PROBLEM_NAMES for p in parts) and len(parts) == len(set(parts)) <= 2:
            return value
        raise ValueError(
            f"must be one of {', '.join(PROBLEM_NAMES)} "
            "or a mixture of two distinct ones like 'parity+polynomial'"
        )

    @field_validator("max_len")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        if "min_len" in info.data and value < info.data["min_len"]:
            raise ValueError(f"must be >= min_len ({info.data['min_len']})")
        return value

    @field_validator("test_max_len")
    @classmethod
    def _test_at_least_max(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and "max_len" in info.data and value < info.data["max_len"]:
            raise ValueError(f"must be >= max_len ({info.data['max_len']})")
        return value

    @property
    def parts(self) -> tuple[str, ...]:
        """The problems in the data: one, or a mixture's two in order."""
        return tuple(self.problem.split(MIXTURE_SEPARATOR))

    @property
    def width_len(self) -> int:
        """The longest input length in any split; every row is padded to fit it."""
        return max(self.max_len, self.test_max_len or 0)

    @property
    def n_ctx(self) -> int:
        """Sequence width: [problem] x_1..x_L [EoI] y_1..y_L plus at least one EoS, for the longest L."""
        return 2 * self.width_len + 3


# --------------------------------------------------------------------------------------------- model


class ModelSpec(_Spec):
    """The transformer (TransformerLens dimension names). The defaults are the paper's model."""

    n_layers: int = Field(2, ge=1, le=12)
    n_heads: int = Field(1, ge=1, le=16)
    d_model: int = Field(128, ge=2, le=2048)
    d_mlp: int | None = Field(None, ge=1, le=16384)  # None -> 4 * d_model
    pos_encoding: Literal["learned", "frozen", "rope", "none"] = "learned"
    norm: Literal["paper", "pre"] = "paper"  # "paper": the stream itself is normalised before attention
    bias: bool = False
    dropout: float = Field(0.1, ge=0.0, le=0.9)  # on the embeddings only
    pos_init_std: float = Field(1.0, gt=0.0, le=10.0)  # std of the positional table at init (PyTorch's: 1)

    @field_validator("d_model")
    @classmethod
    def _heads_divide(cls, value: int, info: ValidationInfo) -> int:
        if "n_heads" in info.data and value % info.data["n_heads"]:
            raise ValueError(f"must be divisible by n_heads ({info.data['n_heads']})")
        return value

    @field_validator("d_mlp")
    @classmethod
    def _resolve_d_mlp(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and "d_model" in info.data:
            return 4 * info.data["d_model"]
        return value

    @field_validator("pos_encoding")
    @classmethod
    def _rope_needs_even_heads(cls, value: str, info: ValidationInfo) -> str:
        d_model, n_heads = info.data.get("d_model"), info.data.get("n_heads")
        if value == "rope" and d_model and n_heads and (d_model // n_heads) % 2:
            raise ValueError("rope needs an even d_head (d_model / n_heads)")
        return value

    @field_validator("pos_init_std")
    @classmethod
    def _needs_a_table(cls, value: float, info: ValidationInfo) -> float:
        if value != 1.0 and info.data.get("pos_encoding") in ("rope", "none"):
            raise ValueError("applies to a positional table: pos_encoding learned or frozen")
        return value

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_vocab(self) -> int:
        return D_VOCAB


# -------------------------------------------------------------------------------------- optimisation

_INIT_FROM = re.compile(r"^(\d+)@(\d+)$")  # RUN_ID@STEP
_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
TRAINABLE_ALIASES = {"mlp2": (block_module(1, "mlp"),)}  # "all" trains everything


class TrainSpec(_Spec):
    """How to train: steps, batches, optimiser and schedule, what to record, where to start from."""

    steps: int = Field(64_000, ge=1, le=MAX_STEPS)  # optimiser steps (the paper's 1000 epochs)
    batch_size: int = Field(256, ge=1, le=65_536)
    lr: float = Field(3e-4, gt=0.0, le=1.0)
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)  # cosine floor, as a fraction of lr
    # sharpening: attention logits x qk_scale, ramped linearly from 1 over steps qk_scale_from..qk_scale_until
    qk_scale: float = Field(1.0, ge=1.0, le=64.0)  # 1: off (the paper)
    qk_scale_from: int = Field(0, ge=0, le=MAX_STEPS)
    qk_scale_until: int = Field(0, ge=0, le=MAX_STEPS)
    shuffle: bool = False  # False: batches walk the data sorted by length, as the paper does
    loss_on: Literal["all", "cot"] = "all"  # all: CoT and EoS padding after EoI; cot: y_1..y_L only
    seed: int = Field(0, ge=0, le=SEED_MAX)
    eval_every: int = Field(640, ge=1, le=MAX_STEPS)
    snapshot_every: int = Field(640, ge=1, le=MAX_STEPS)
    checkpoint_every: int = Field(6400, ge=1, le=MAX_STEPS)
    eval_generate: bool = True  # also measure autoregressive accuracy at evaluations
    eval_rows_per_len: int | None = Field(None, ge=1, le=100_000)  # None: whole splits; the last evaluation is always whole
    init_from: str | None = None  # "RUN_ID@STEP": start from that run's weights at that step
    trainable: str = "all"  # "all", "mlp2" (second-layer MLP), or "blocks.1.mlp,unembed"
    device: str | None = None  # "cpu", "cuda", "cuda:N"; None: the worker chooses

    @field_validator("warmup_steps")
    @classmethod
    def _warmup_within_steps(cls, value: int, info: ValidationInfo) -> int:
        if "steps" in info.data and value > info.data["steps"]:
            raise ValueError(f"must be <= steps ({info.data['steps']})")
        return value

    @field_validator("qk_scale_until")
    @classmethod
    def _ramp_ends_after_it_starts(cls, value: int, info: ValidationInfo) -> int:
        start = info.data.get("qk_scale_from")
        if start is not None and value < start:
            raise ValueError(f"must be >= qk_scale_from ({start})")
        return value

    @field_validator("init_from")
    @classmethod
    def _run_at_step(cls, value: str | None) -> str | None:
        if value is not None and not _INIT_FROM.match(value):
            raise ValueError("must be RUN_ID@STEP, e.g. 3@6400")
        return value

    @field_validator("trainable")
    @classmethod
    def _module_list(cls, value: str) -> str:
        if value == "all" or value in TRAINABLE_ALIASES:
            return value
        names = [name.strip() for name in value.split(",")]
        for name in names:
            if not _MODULE_PATH.match(name) or name.split(".")[0] not in TOP_MODULES:
                aliases = ", ".join(repr(alias) for alias in TRAINABLE_ALIASES)
                raise ValueError(
                    f"{name!r} is not 'all', {aliases} or a module name under {', '.join(TOP_MODULES)} "
                    "(comma-separate several)"
                )
        return ",".join(names)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not DEVICE.fullmatch(value):
            raise ValueError("must be cpu, cuda or cuda:N")
        return value

    @property
    def init_source(self) -> tuple[int, int] | None:
        """``init_from`` as (run_id, step), or None."""
        return parse_init_from(self.init_from) if self.init_from else None

    @property
    def trainable_modules(self) -> tuple[str, ...] | None:
        """Module names whose parameters train; None means all of them."""
        if self.trainable == "all":
            return None
        return TRAINABLE_ALIASES.get(self.trainable) or tuple(self.trainable.split(","))


def parse_init_from(value: str) -> tuple[int, int]:
    """``"3@6400" -> (3, 6400)``."""
    match = _INIT_FROM.match(value)
    if match is None:
        raise SpecError([("init_from", f"must be RUN_ID@STEP, e.g. 3@6400 (got {value!r})")])
    return int(match[1]), int(match[2])


# ----------------------------------------------------------------------------------------------- run


class _CrossFieldError(ValueError):
    """Raised by RunSpec's cross-spec checks, naming the flat key it blames."""

    def __init__(self, field: str, message: str, value: Any) -> None:
        super().__init__(message)
        self.field, self.value = field, value


class RunSpec(_Spec):
    """One training run: data, model, optimisation. Flat keys are unique across the three."""

    problem: ProblemSpec
    model: ModelSpec
    train: TrainSpec

    @model_validator(mode="after")
    def _modules_exist(self) -> Self:
        """A ``blocks.N...`` name in ``trainable`` must name a block this model has, and a part of it."""
        trainable, n_layers = self.train.trainable, self.model.n_layers
        for name in self.train.trainable_modules or ():
            parts = name.split(".")
            if parts[0] != "blocks" or len(parts) == 1:
                continue
            if not parts[1].isdigit() or int(parts[1]) >= n_layers:
                raise _CrossFieldError("trainable", f"{name} needs a block index below n_layers ({n_layers})", trainable)
            if len(parts) > 2 and parts[2] not in BLOCK_MODULES:
                raise _CrossFieldError("trainable", f"{name}: a block holds {', '.join(BLOCK_MODULES)}", trainable)
        return self

    @property
    def n_ctx(self) -> int:
        return self.problem.n_ctx

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "RunSpec":
        """Build from flat keys; raises SpecError on unknown keys or invalid values."""
        _check_keys(flat)
        sections: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for key, value in flat.items():
            sections[FLAT_FIELDS[key][0]][key] = value
        try:
            return cls.model_validate(sections)
        except ValidationError as exc:
            raise SpecError.from_validation(exc) from None

    def to_flat(self) -> dict[str, Any]:
        """The flat dict (JSON types) that :meth:`from_flat` reads back to an equal spec."""
        flat: dict[str, Any] = {}
        for section in SECTIONS:
            flat.update(getattr(self, section).model_dump(mode="json"))
        return flat


SECTIONS: dict[str, type[_Spec]] = {"problem": ProblemSpec, "model": ModelSpec, "train": TrainSpec}
FLAT_FIELDS = {  # flat key -> (section, pydantic FieldInfo)
    key: (section, info) for section, spec in SECTIONS.items() for key, info in spec.model_fields.items()
}
FLAT_KEYS = tuple(FLAT_FIELDS)
if len(FLAT_KEYS) != sum(len(spec.model_fields) for spec in SECTIONS.values()):
    raise RuntimeError("flat spec keys must be unique across ProblemSpec, ModelSpec and TrainSpec")


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunSpec:
    """``base`` (a preset or a stored run's flat spec) updated by ``overrides``, validated."""
    return RunSpec.from_flat({**base, **overrides})


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["d_model=64", "shuffle=true", "init_from=3@100"]`` -> typed overrides (later items win).

    Values are converted by the field's type: bool from true/false/1/0/yes/no, None from none/null
    where the field allows None, int and float by Python's parsers, anything else kept as text.
    """
    parsed: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            errors.append((key or item, f"expected KEY=VALUE (got {item!r})"))
        elif key not in FLAT_FIELDS:
            errors.append(_unknown(key))
        else:
            try:
                parsed[key] = _coerce(FLAT_FIELDS[key][1].annotation, text)
            except ValueError as exc:
                errors.append((key, f"{exc} (got {text!r})"))
    if errors:
        raise SpecError(errors)
    return parsed


def _coerce(annotation: Any, text: str) -> Any:
    types = get_args(annotation) if get_origin(annotation) is not Literal else (annotation,)
    types = types or (annotation,)
    if type(None) in types and text.lower() in ("none", "null"):
        return None
    kind = next(t for t in types if t is not type(None))
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError("must be true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("must be an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("must be a number") from None
    return text


def _check_keys(flat: Mapping[str, Any]) -> None:
    unknown = [key for key in flat if key not in FLAT_FIELDS]
    if unknown:
        raise SpecError(_unknown(key) for key in unknown)


def _unknown(key: str) -> tuple[str, str]:
    close = difflib.get_close_matches(key, FLAT_KEYS, n=3)
    if close:
        return key, f"unknown key; did you mean {' or '.join(repr(c) for c in close)}?"
    return key, f"unknown key; known keys: {', '.join(FLAT_KEYS)}"


_MESSAGES = {  # pydantic error type -> our wording ({...} filled from the error's ctx)
    "less_than_equal": "must be <= {le}",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
}


def _render(error: Mapping[str, Any]) -> tuple[str, str]:
    """A pydantic error dict -> (flat key, "message (got VALUE)")."""
    ctx = error.get("ctx", {})
    cause = ctx.get("error")
    if isinstance(cause, _CrossFieldError):
        return cause.field, f"{cause} (got {cause.value!r})"
    names = [part for part in error["loc"] if isinstance(part, str)]
    field = names[-1] if names else "spec"
    if error["type"] == "value_error":
        message = str(cause)
    elif error["type"] in _MESSAGES:
        message = _MESSAGES[error["type"]].format(**ctx)
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    if error["type"] == "missing":
        return field, message
    return field, f"{message} (got {error['input']!r})"


# -------------------------------------------------------------------------------------------- sweeps

MAX_SWEEP_AXES = 2  # numeric spec keys a sweep varies (seeds come on top)
MAX_AXIS_VALUES = 64
MAX_SWEEP_CELLS = 256


class SweepSpec(BaseModel):
    """A grid of runs: a base (a preset and/or flat overrides) crossed with up to two numeric axes and seeds.

        SweepSpec.parse({"preset": "fast-parity", "overrides": {"steps": 500},
                         "axes": {"d_model": [32, 64], "max_len": [4, 8]}, "seeds": [0, 1]})

    has 2 x 2 x 2 = 8 cells, each a flat dict such as ``{"d_model": 64, "max_len": 8, "seed": 1}``
    laid over the base. :meth:`parse` validates every cell as a RunSpec up front: bad input raises
    SpecError with one line per problem, naming the axis (``axes.d_model: must be <= 2048 (got
    4096)``) or, for a cross-field problem, the key and the first cell it breaks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    preset: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)  # flat keys over the preset
    axes: dict[str, list[float | int]] = Field(default_factory=dict)  # key -> values, in grid order
    seeds: list[int] | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "SweepSpec":
        """Validate ``data`` (JSON types) into a SweepSpec whose every cell is a valid RunSpec."""
        try:
            sweep = cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_render_sweep(error) for error in exc.errors()) from None
        sweep.runs()  # raises SpecError naming the axis and the cell
        return sweep

    def base(self) -> dict[str, Any]:
        """The flat base every cell starts from: the preset's keys, then the overrides."""
        flat: dict[str, Any] = {}
        if self.preset is not None:
            from core.presets import get_preset  # presets import this module

            flat.update(get_preset(self.preset))
        flat.update(self.overrides)
        return flat

    def cells(self) -> list[dict[str, Any]]:
        """Every cell in grid order (the first axis slowest, seeds fastest); checks the grid's shape."""
        errors = self._shape_errors()
        if errors:
            raise SpecError(errors)
        grid: list[dict[str, Any]] = [{}]
        for key, values in self.axes.items():
            grid = [{**cell, key: _axis_value(key, value)} for cell in grid for value in values]
        if self.seeds is not None:
            grid = [{**cell, "seed": seed} for cell in grid for seed in self.seeds]
        return grid

    def runs(self) -> list[tuple[dict[str, Any], RunSpec]]:
        """(cell, its validated RunSpec) for every cell; SpecError lists what is wrong, axis by axis."""
        base = self.base()
        _check_keys(base)
        found: dict[str, str] = {}  # field -> message, the first cell that shows it
        runs = []
        for cell in self.cells():
            try:
                runs.append((cell, RunSpec.from_flat({**base, **cell})))
            except SpecError as exc:
                for field, message in exc.errors:
                    name = f"axes.{field}" if field in self.axes else "seeds" if field == "seed" and self.seeds else field
                    found.setdefault(name, message if name.startswith(("axes.", "seeds")) else
                                     f"{message} in cell {cell_label(cell)}")
        if found:
            raise SpecError(found.items())
        return runs

    def stored_axes(self) -> dict[str, list]:
        """The axes as the ``sweeps`` table keeps them: seeds as one more axis, ``seed``."""
        axes = {key: [_axis_value(key, v) for v in values] for key, values in self.axes.items()}
        return {**axes, "seed": list(self.seeds)} if self.seeds is not None else axes

    @classmethod
    def from_stored(cls, spec: Mapping[str, Any], axes: Mapping[str, list]) -> "SweepSpec":
        """The SweepSpec of a ``sweeps`` row (its flat base spec and stored axes)."""
        axes = dict(axes)
        seeds = axes.pop("seed", None)
        return cls(overrides=dict(spec), axes=axes, seeds=seeds)

    def _shape_errors(self) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        if not self.axes and not self.seeds:
            errors.append(("axes", "give at least one axis or a list of seeds"))
        if len(self.axes) > MAX_SWEEP_AXES:
            errors.append(("axes", f"at most {MAX_SWEEP_AXES} axes (got {len(self.axes)}: {', '.join(self.axes)})"))
        for key, values in self.axes.items():
            field = f"axes.{key}"
            if key not in FLAT_FIELDS:
                errors.append((field, _unknown(key)[1]))
            elif key == "seed":
                errors.append((field, "vary seeds with `seeds`, not an axis"))
            elif _numeric_kind(key) is None:
                errors.append((field, "not a numeric key; an axis varies an integer or a number"))
            elif not values:
                errors.append((field, "needs at least one value"))
            elif len(values) > MAX_AXIS_VALUES:
                errors.append((field, f"at most {MAX_AXIS_VALUES} values (got {len(values)})"))
            elif len(set(values)) != len(values):
                errors.append((field, f"values repeat (got {values})"))
            elif _numeric_kind(key) is int and any(float(v) != int(v) for v in values):
                errors.append((field, f"must be integers (got {values})"))
        if self.seeds is not None:
            if not self.seeds:
                errors.append(("seeds", "needs at least one seed"))
            elif len(set(self.seeds)) != len(self.seeds):
                errors.append(("seeds", f"seeds repeat (got {self.seeds})"))
            elif any(not 0 <= seed <= SEED_MAX for seed in self.seeds):
                errors.append(("seeds", f"must be in 0..{SEED_MAX} (got {self.seeds})"))
        n = 1
        for values in [*self.axes.values(), self.seeds or [None]]:
            n *= max(len(values), 1)
        if n > MAX_SWEEP_CELLS:
            errors.append(("axes", f"{n} cells; a sweep may have at most {MAX_SWEEP_CELLS}"))
        return errors


def cell_label(cell: Mapping[str, Any]) -> str:
    """``{"d_model": 64, "seed": 1}`` -> ``d_model=64,seed=1`` (a cell's name and submit-key suffix)."""
    return ",".join(f"{key}={value}" for key, value in cell.items())


def _numeric_kind(key: str) -> type | None:
    annotation = FLAT_FIELDS[key][1].annotation
    kinds = [t for t in (get_args(annotation) or (annotation,)) if t is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float) else None


def _axis_value(key: str, value: float | int) -> float | int:
    """Integral values of an integer key as int (so 64.0 names the same cell as 64)."""
    if _numeric_kind(key) is int and float(value) == int(value):
        return int(value)
    return value


def _render_sweep(error: Mapping[str, Any]) -> tuple[str, str]:
    """A pydantic error on the sweep's own shape -> (``axes.d_model`` or ``seeds``, message)."""
    loc = [str(part) for part in error["loc"]]
    field = ".".join(part for part in loc if not part.isdigit()) or "sweep"
    template = _MESSAGES.get(error["type"]) or error["msg"][:1].lower() + error["msg"][1:]
    message = template.format(**error.get("ctx", {})) if error["type"] in _MESSAGES else template
    return field, message if error["type"] == "missing" else f"{message} (got {error.get('input')!r})"


# -------------------------------------------------------------------------------------------- budget

CPU_GFLOPS = 75.0  # effective fp32 training throughput of the reference 2-core CPU (290 ms per paper step)
ADAM_BYTES_PER_PARAM = 16  # fp32 weight, gradient and two moments


class Budget(BaseModel):
    """What a run will cost, estimated before it is queued."""

    model_config = ConfigDict(frozen=True)

    n_params: int  # every parameter, frozen ones included
    tokens_per_step: int  # batch_size * (n_ctx - 1) positions fed to the model
    flops_per_step: int  # 6 * n_params * tokens_per_step (forward + backward, attention products ignored)
    train_bytes: int  # fp32 activations kept for backward + weights, gradients and Adam moments
    snapshot_bytes: int  # every probe-set attention snapshot of the run, float16, before compression
    est_seconds_cpu: float  # steps * flops_per_step at cpu_gflops
    cpu_gflops: float


def count_params(spec: RunSpec) -> int:
    """The exact parameter count of the model core.ml builds for ``spec``."""
    m, d = spec.model, spec.model.d_model
    bias = int(m.bias)
    positions = spec.n_ctx * d if m.pos_encoding in ("learned", "frozen") else 0
    per_layer = 4 * d * d + 2 * d * m.d_mlp + bias * (4 * d + m.d_mlp + d)
    norms = (2 * m.n_layers + 1) * d * (1 + bias)
    return D_VOCAB * d + positions + m.n_layers * per_layer + norms + d * D_VOCAB + bias * D_VOCAB


def estimate_budget(spec: RunSpec, *, gflops: float = CPU_GFLOPS) -> Budget:
    """Parameters, compute, memory and time of ``spec``; rough except ``n_params``, which is exact."""
    m, t, p = spec.model, spec.train, spec.problem
    n_params = count_params(spec)
    T = spec.n_ctx - 1  # input positions: the last token is only ever a target
    tokens = t.batch_size * T
    flops = 6 * n_params * tokens
    per_layer = 10 * m.d_model + 2 * m.d_mlp + 3 * m.n_heads * T  # floats kept per position
    activations = 4 * tokens * (m.n_layers * per_layer + 2 * m.d_model + 3 * D_VOCAB)
    n_probe = p.probe_per_len * (p.width_len - p.min_len + 1)
    n_snapshots = t.steps // t.snapshot_every + 1
    snapshot = 2 * m.n_layers * m.n_heads * n_probe * spec.n_ctx * spec.n_ctx
    return Budget(
        n_params=n_params,
        tokens_per_step=tokens,
        flops_per_step=flops,
        train_bytes=activations + ADAM_BYTES_PER_PARAM * n_params,
        snapshot_bytes=n_snapshots * snapshot,
        est_seconds_cpu=t.steps * flops / (gflops * 1e9),
        cpu_gflops=gflops,
    )
