"""Bad spec input: :class:`SpecError`, one ``FIELD: message (got VALUE)`` line per problem.

``.errors`` holds the same as (field, message) pairs for a 422 response; ``render`` words a pydantic
error that way, naming the flat key it concerns.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError


class SpecError(ValueError):
    """Invalid spec input. ``str()`` is one ``FIELD: message`` line per error; ``.errors`` lists them."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(f"{field}: {message}" for field, message in self.errors))

    @classmethod
    def from_validation(cls, exc: ValidationError) -> "SpecError":
        """One readable line per pydantic error, named by the flat key it concerns."""
        return cls(render(error) for error in exc.errors())


class CrossFieldError(ValueError):
    """Raised by RunSpec's cross-spec checks, naming the flat key it blames."""

    def __init__(self, field: str, message: str, value: Any) -> None:
        super().__init__(message)
        self.field, self.value = field, value


MESSAGES = {  # pydantic error type -> our wording ({...} filled from the error's ctx)
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


def render(error: Mapping[str, Any]) -> tuple[str, str]:
    """A pydantic error dict -> (flat key, "message (got VALUE)")."""
    ctx = error.get("ctx", {})
    cause = ctx.get("error")
    if isinstance(cause, CrossFieldError):
        return cause.field, f"{cause} (got {cause.value!r})"
    names = [part for part in error["loc"] if isinstance(part, str)]
    field = names[-1] if names else "spec"
    if error["type"] == "value_error":
        message = str(cause)
    elif error["type"] in MESSAGES:
        message = MESSAGES[error["type"]].format(**ctx)
    else:
        message = error["msg"][:1].lower() + error["msg"][1:]
    if error["type"] == "missing":
        return field, message
    return field, f"{message} (got {error['input']!r})"
