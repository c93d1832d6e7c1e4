"""The job contract: what a run is, as validated data.

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
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator

from core.names import BLOCK_MODULES, DEVICE, MIXTURE_SEPARATOR, PROBLEM_NAMES, TOP_MODULES, block_module
from core.specs.errors import CrossFieldError, SpecError

D_VOCAB = 64  # the paper's vocabulary; core.problems.tokens.VOCAB_SIZE says the same
MAX_LEN = 64  # the longest input length any problem spec may ask for
SEED_MAX = 2**32 - 1
MAX_STEPS = 10_000_000

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
        return value if value is None else check_device(value)

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


def check_device(value: str) -> str:
    """``value`` if it names a device (``cpu``, ``cuda``, ``cuda:N``), else a ValueError that says so.

    The one check of a device name: a spec's ``device``, ``circuitboard worker --device`` and the
    local worker's ``--device`` all call it.
    """
    if not DEVICE.fullmatch(value):
        raise ValueError("must be cpu, cuda or cuda:N")
    return value


def parse_init_from(value: str) -> tuple[int, int]:
    """``"3@6400" -> (3, 6400)``."""
    match = _INIT_FROM.match(value)
    if match is None:
        raise SpecError([("init_from", f"must be RUN_ID@STEP, e.g. 3@6400 (got {value!r})")])
    return int(match[1]), int(match[2])


# ----------------------------------------------------------------------------------------------- run


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
                raise CrossFieldError("trainable", f"{name} needs a block index below n_layers ({n_layers})", trainable)
            if len(parts) > 2 and parts[2] not in BLOCK_MODULES:
                raise CrossFieldError("trainable", f"{name}: a block holds {', '.join(BLOCK_MODULES)}", trainable)
        return self

    @property
    def n_ctx(self) -> int:
        return self.problem.n_ctx

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "RunSpec":
        """Build from flat keys; raises SpecError on unknown keys or invalid values."""
        check_keys(flat)
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


def check_keys(flat: Mapping[str, Any]) -> None:
    unknown = [key for key in flat if key not in FLAT_FIELDS]
    if unknown:
        raise SpecError(unknown_key(key) for key in unknown)


def unknown_key(key: str) -> tuple[str, str]:
    close = difflib.get_close_matches(key, FLAT_KEYS, n=3)
    if close:
        return key, f"unknown key; did you mean {' or '.join(repr(c) for c in close)}?"
    return key, f"unknown key; known keys: {', '.join(FLAT_KEYS)}"
