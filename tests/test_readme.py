"""Keep the README honest: its test command is the one CI runs, every preset, spec key, command and
API route it names exists, and every one that exists is named."""

import re
from pathlib import Path

from core.presets import PRESETS
from core.specs.run import FLAT_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert lines[-1] in README, f"README does not give CI's test command {lines[-1]!r}"


def test_every_preset_is_documented_and_every_documented_preset_exists():
    named = set(re.findall(r"`((?:paper|fast)-[a-z-]+)`", README))
    assert named == set(PRESETS)


def test_spec_keys_in_the_readme_exist():
    table = README.split("## Spec keys", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)`", table, flags=re.M))
    assert documented == set(FLAT_KEYS)


def test_every_command_is_documented():
    from core.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) <= set(re.findall(r"circuitboard ([a-z-]+)", README))


def test_every_api_route_is_documented(tmp_path):
    from core.settings import Settings
    from server.main import create_app

    def generic(path: str) -> str:  # {run_id}, {sweep_id}, ... all read as {id}
        return re.sub(r"\{[a-z_]+\}", "{id}", path)

    paths = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'cb.db'}")).openapi()["paths"]
    table = README.split("### JSON API", 1)[1].split("\n#", 1)[0]
    documented = {generic(p) for p in re.findall(r"(?:GET|POST|DELETE) (/api/[^`,\s]+)", table)}
    documented |= {generic(p).replace("...", "/api/runs/{id}") for p in re.findall(r"`(\.\.\./download/[^`]+)`", table)}
    assert {generic(p) for p in paths} <= documented
