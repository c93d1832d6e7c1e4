"""The wheel is the whole app: a plain ``pip install .`` serves, migrates and trains without the checkout.

The wheel is built here, offline (``pip wheel --no-deps --no-build-isolation``), from a copy of the
source tree, so a stale ``build/`` folder cannot lend it files the tree no longer has. It must hold
every template, static file and migration of the tree, every Python module of the packages, and
the ``circuitboard`` console script pointing at a real function. The serving path (web app, CLI,
local worker, training) must load nothing that only the ``dev`` extra installs, so that
``pip install ".[ml]"`` is enough to serve and train.
"""

from __future__ import annotations

import configparser
import importlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DATA_FOLDERS = ("frontend_templates", "migrations")  # top-level folders that are not code
CODE_PACKAGES = ("core", "server", "worker")
# import name of each `dev` distribution; a new dev dependency must be added here
DEV_IMPORTS = {"pytest": "pytest", "pytest-timeout": "pytest_timeout", "hypothesis": "hypothesis",
               "psutil": "psutil", "httpx": "httpx", "playwright": "playwright", "schemathesis": "schemathesis",
               "pyyaml": "yaml", "redis": "redis", "transformer-lens": "transformer_lens"}
JUNK = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", "*.db", "*.db-*",
                              ".venv", "venv", ".pytest_cache", ".hypothesis")


def tree_files(folder: str) -> set[str]:
    """Every file under a top-level folder of the checkout, as a wheel names it (no bytecode)."""
    return {path.relative_to(ROOT).as_posix() for path in (ROOT / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Iterator[zipfile.ZipFile]:
    source, out = tmp_path_factory.mktemp("source") / "circuitboard", tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, source, ignore=JUNK)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", "-q", "-w", str(out), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("circuitboard-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.parametrize("folder", DATA_FOLDERS)
def test_the_wheel_holds_every_template_static_file_and_migration(wheel, folder):
    expected = tree_files(folder)
    assert len(expected) >= 5  # not vacuous: the folder was found and read
    missing = expected - set(wheel.namelist())
    assert not missing, f"the wheel lacks {sorted(missing)}"


def test_the_wheel_holds_the_pages_their_assets_and_every_revision(wheel):
    names = set(wheel.namelist())
    assert {"frontend_templates/base.html", "frontend_templates/static/css/app.css", "migrations/env.py",
            "migrations/script.py.mako"} <= names
    revisions = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert revisions and revisions <= {Path(n).name for n in names if n.startswith("migrations/versions/")}


@pytest.mark.parametrize("package", CODE_PACKAGES)
def test_the_wheel_holds_every_module_of_the_code(wheel, package):
    expected = {name for name in tree_files(package) if name.endswith(".py")}
    assert f"{package}/__init__.py" in expected
    missing = expected - set(wheel.namelist())
    assert not missing, f"the wheel lacks {sorted(missing)} (a folder without __init__.py?)"


def test_the_console_script_points_at_a_real_function(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    target = parser["console_scripts"]["circuitboard"]
    assert target == PYPROJECT["project"]["scripts"]["circuitboard"]
    module, function = target.split(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_wheel_ships_no_bytecode_tests_or_databases(wheel):
    names = wheel.namelist()
    assert not [n for n in names if n.endswith((".pyc", ".db")) or n.startswith(("tests/", "benchmarks/"))]


def test_serving_and_training_load_nothing_from_the_dev_extra():
    dev = {re.match(r"[A-Za-z0-9._-]+", requirement).group().lower()
           for requirement in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert dev <= set(DEV_IMPORTS), f"add the import names of {sorted(dev - set(DEV_IMPORTS))} to DEV_IMPORTS"
    code = ("import sys, uvicorn, core.cli, core.settings, server.main, worker.local, worker.execute, core.ml.train; "
            "server.main.create_app(core.settings.Settings(database_url='sqlite://')); "
            "print('\\n'.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    assert {"torch", "fastapi", "server.api.runs", "worker.local"} <= loaded  # not vacuous
    assert not {DEV_IMPORTS[name] for name in dev} & loaded
