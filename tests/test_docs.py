"""Keep the documentation honest: README.md and docs/*.md name every command and option, every route,
spec key, preset and setting that exists, and only those that exist; every doc is linked from the
README; links and repository paths resolve; the README's test command is the one CI runs; and
nothing in the repository cites the design notes that live outside it."""

import re
import subprocess
from pathlib import Path

from core.presets import PRESETS
from core.studies import STUDIES
from core.settings import Settings
from core.specs.run import FLAT_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOC_FILES = sorted((ROOT / "docs").glob("*.md"))
DOCS = {path: path.read_text() for path in [ROOT / "README.md", *DOC_FILES]}
ALL = "\n".join(DOCS.values())
OUTSIDE_NOTES = ("PAPER" + ".md", "DESIGN" + ".md")  # spelled apart so this file does not cite them


def doc(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


def section(text: str, heading: str) -> str:
    """The body of the section under ``heading`` (a whole heading line), up to the next heading of any level."""
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(r"\n#+ ", body, maxsplit=1)[0]


def generic(path: str) -> str:  # {run_id}, {sweep_id:int}, ... all read as {id}
    return re.sub(r"\{[a-z_]+(?::[a-z]+)?\}", "{id}", path)


# ---------------------------------------------------------------- the README

def test_the_readme_is_short():
    assert len(README.splitlines()) < 200


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    setup = section(README, "## Set-up").split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert any(line.strip().endswith(lines[-1]) for line in setup), (
        f"the README's set-up commands do not end with CI's test command {lines[-1]!r}")


def test_every_doc_is_linked_from_the_readme():
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", README))
    assert {f"docs/{path.name}" for path in DOC_FILES} <= linked


# ---------------------------------------------------------------- names that must exist, all of them

def test_every_preset_is_documented_and_every_documented_preset_exists():
    named = set(re.findall(r"`((?:paper|fast)-[a-z-]+)`", ALL))
    assert named == set(PRESETS) | set(STUDIES)  # run presets, and the studies `sweep --preset` takes


def test_spec_keys_in_the_reference_exist():
    table = section(doc("reference.md"), "## Spec keys")
    documented = set(re.findall(r"^\| `([a-z_]+)`", table, flags=re.M))
    assert documented == set(FLAT_KEYS)


def test_every_setting_is_documented():
    documented = set(re.findall(r"`(CIRCUITBOARD_[A-Z_]+)`", ALL))
    assert {f"CIRCUITBOARD_{name.upper()}" for name in Settings.model_fields} <= documented


def commands() -> dict:
    from core.cli import build_parser

    return build_parser()._subparsers._group_actions[0].choices


def test_every_command_is_documented():
    assert set(commands()) <= set(re.findall(r"circuitboard ([a-z-]+)", README))
    assert set(commands()) <= set(re.findall(r"circuitboard ([a-z-]+)", ALL))


def test_every_option_of_every_command_is_documented_and_no_other():
    table = section(doc("reference.md"), "## Command line")
    rows = dict(re.findall(r"^\| `circuitboard ([a-z-]+)` \| ([^|]*(?:\\\|[^|]*)*) \|", table, flags=re.M))
    assert set(rows) == set(commands()), "the command table of docs/reference.md lists other commands"
    for name, parser in commands().items():
        options = {opt for action in parser._actions for opt in action.option_strings
                   if opt.startswith("--") and opt != "--help"}
        documented = set(re.findall(r"`(--[a-z-]+)", rows[name]))
        assert documented == options, f"circuitboard {name}: documented {sorted(documented)}, real {sorted(options)}"


def app_routes(tmp_path) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves at its root; a mount reads as GET."""
    from server.main import SHARE_PREFIX, create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'cb.db'}"))
    found = set()

    def add(route, prefix=""):
        methods = (getattr(route, "methods", None) or {"GET"}) - {"HEAD"}
        found.update((method, generic(prefix + route.path)) for method in methods)

    for route in app.routes:
        if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.16x)
            prefix = route.include_context.prefix
            if prefix == SHARE_PREFIX:
                continue  # the read routes again, under a share link (documented once, below)
            for inner in route.original_router.routes:
                add(inner, prefix)
        else:
            add(route)
    return found


def test_every_route_is_documented(tmp_path):
    documented = {(m, generic(p)) for m, p in re.findall(r"`(GET|POST|DELETE|PUT|PATCH) (/[^`\s,]*)", ALL)}
    missing = app_routes(tmp_path) - documented
    assert not missing, f"routes the docs do not name: {sorted(missing)}"


def test_every_api_route_is_in_the_api_table(tmp_path):
    from core.settings import Settings as S
    from server.main import create_app

    paths = create_app(S(database_url=f"sqlite:///{tmp_path / 'cb.db'}")).openapi()["paths"]
    table = doc("api.md").split("\n| route |", 1)[1].split("\n\n", 1)[0]
    documented = {generic(p) for p in re.findall(r"(?:GET|POST|DELETE) (/api/[^`,\s]+)", table)}
    assert {generic(p) for p in paths} <= documented


def test_share_links_are_documented():
    from server.main import SHARE_PREFIX

    assert f"{SHARE_PREFIX}/api/" in doc("api.md") and f"{SHARE_PREFIX}/" in doc("dashboard.md")


# ---------------------------------------------------------------- links and citations

FILE_PATH = re.compile(r"`((?:core|server|worker|tests|benchmarks|docs|migrations|frontend_templates|\.ci)/"
                       r"[A-Za-z0-9_./-]*[A-Za-z0-9_]/?)(?:::([A-Za-z0-9_]+))?`")  # a file, a folder/, or file::test


def test_links_to_repository_files_resolve():
    broken = []
    for path, text in DOCS.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor in the same file
            if not (path.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{path.name}: {target}")
    assert not broken, broken


def test_repository_paths_named_in_the_docs_exist():
    missing = set()
    for path, text in DOCS.items():
        for target, test in FILE_PATH.findall(text):
            if not (ROOT / target).exists():
                missing.add(f"{path.name}: {target}")
            elif test and f"def {test}(" not in (ROOT / target).read_text():
                missing.add(f"{path.name}: {target}::{test}")
    assert not missing, sorted(missing)


def repository_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but caches
        return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts and "__pycache__" not in p.parts]


def test_nothing_cites_the_design_notes_outside_the_repository():
    citing = []
    for path in repository_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary files (screenshots) cite nothing
        citing += [f"{path.relative_to(ROOT)}: {name}" for name in OUTSIDE_NOTES if name in text]
    assert not citing, citing
