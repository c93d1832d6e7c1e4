"""Where the files that are not Python live: templates, static files, Alembic migrations.

They keep their top-level folders (``frontend_templates/``, ``migrations/``), and each folder is a
package of its own, so the wheel ships them as package data beside ``core``, ``server`` and
``worker`` (pyproject.toml, ``[tool.setuptools.package-data]``). They are found through the import
system, never through the working directory or a path from the checkout: the same call answers in
a checkout (the repository root is on ``sys.path``), an editable install and a plain
``pip install .``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_dir(package: str) -> Path:
    """The directory of a (regular, non-zipped) package, e.g. ``package_dir("migrations")``."""
    return Path(str(files(package)))


def templates_dir() -> Path:
    """Jinja templates: ``base.html``, the pages, ``partials/``."""
    return package_dir("frontend_templates")


def static_dir() -> Path:
    """CSS and JavaScript served under ``/static``."""
    return templates_dir() / "static"


def migrations_dir() -> Path:
    """Alembic's script location: ``env.py``, ``script.py.mako``, ``versions/``."""
    return package_dir("migrations")
