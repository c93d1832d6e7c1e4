"""Spec overrides: ``--set key=value`` text typed by the field, and a base updated by overrides."""

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

from core.specs.errors import SpecError
from core.specs.run import FLAT_FIELDS, RunSpec, unknown_key


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
            errors.append(unknown_key(key))
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
