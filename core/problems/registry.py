"""The registry: problem names -> problems, and the "a+b" mixture syntax.

``get_problem("parity")`` returns a Problem; ``get_problem("parity+polynomial")`` returns a
Mixture whose first part is parity (``data_mix`` counts rows of the first part). Anything else
raises ProblemError naming the known problems.
"""

from __future__ import annotations

from core.names import MIXTURE_SEPARATOR
from core.problems import binary_copy, parity, polynomial
from core.problems.problem import Mixture, Problem, ProblemError

PROBLEMS: dict[str, Problem] = {
    p.name: p for p in (polynomial.PROBLEM, parity.PROBLEM, binary_copy.PROBLEM)
}


def get_problem(name: str) -> Problem | Mixture:
    """Look up a problem, or a mixture "a+b" of two distinct registered problems."""
    if not isinstance(name, str):
        raise ProblemError(f"problem name must be a string (got {name!r})")
    if name in PROBLEMS:
        return PROBLEMS[name]
    parts = name.split(MIXTURE_SEPARATOR)
    if len(parts) == 2 and all(p in PROBLEMS for p in parts) and parts[0] != parts[1]:
        return Mixture(name=name, first=PROBLEMS[parts[0]], second=PROBLEMS[parts[1]])
    known = ", ".join(PROBLEMS)
    raise ProblemError(
        f"unknown problem {name!r}; known problems: {known}, "
        f"or a mixture of two distinct ones such as 'parity+polynomial'"
    )
