"""The sweep spec: a base run spec crossed with up to two numeric axes and seeds."""

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.packing import MAX_SEEDS, check_pack_size
from core.presets import get_preset
from core.specs.errors import MESSAGES, SpecError
from core.specs.run import FLAT_FIELDS, SEED_MAX, RunSpec, check_keys, unknown_key



MAX_SWEEP_AXES = 2  # numeric spec keys a sweep varies (seeds come on top)
MAX_AXIS_VALUES = 64
MAX_SWEEP_CELLS = 2048  # the paper's scaling grid is 28 x 60 = 1,680 cells


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
    pack_size: int | None = None  # members per pack; None: the worker's choice (core/packing.py)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "SweepSpec":
        """Validate ``data`` (JSON types) into a SweepSpec whose every cell is a valid RunSpec."""
        try:
            sweep = cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_render_sweep(error) for error in exc.errors()) from None
        if sweep.pack_size is not None:
            check_pack_size(sweep.pack_size)
        sweep.runs()  # raises SpecError naming the axis and the cell
        return sweep

    def base(self) -> dict[str, Any]:
        """The flat base every cell starts from: the preset's keys, then the overrides."""
        flat: dict[str, Any] = {}
        if self.preset is not None:
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
        check_keys(base)
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
                errors.append((field, unknown_key(key)[1]))
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
            elif len(self.seeds) > MAX_SEEDS:
                errors.append(("seeds", f"at most {MAX_SEEDS} seeds in one set (got {len(self.seeds)})"))
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
    template = MESSAGES.get(error["type"]) or error["msg"][:1].lower() + error["msg"][1:]
    message = template.format(**error.get("ctx", {})) if error["type"] in MESSAGES else template
    return field, message if error["type"] == "missing" else f"{message} (got {error.get('input')!r})"
