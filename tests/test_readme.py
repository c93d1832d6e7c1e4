"""Keep the README honest: its test command is the one CI runs, and every preset it names exists."""

import re
from pathlib import Path

from core.presets import PRESETS
from core.specs import FLAT_KEYS

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
