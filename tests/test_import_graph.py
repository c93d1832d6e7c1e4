"""No import cycles among the project's own modules, read from their source with ``ast``.

Every ``import`` and ``from ... import`` counts, at any depth (a function-level import closes a
cycle as surely as a top-level one, only later). Importing ``a.b.c`` also runs ``a`` and ``a.b``,
so a module depends on each package above what it imports; ``from pkg import name`` depends on
``pkg.name`` when that is a module. A package does not depend on its own ``__init__``'s parents
through itself, so those edges are left out.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "server", "worker", "benchmarks")


def module_files(root: Path, packages) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under the given top-level folders."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports (relative imports resolved), candidates for modules."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path, packages) -> dict[str, set[str]]:
    """Module -> the project modules it imports (each with the packages above it)."""
    modules = module_files(root, packages)
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name in imported_names(module, path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in modules and target != module and not module.startswith(target + "."):
                    edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_project_has_no_import_cycle():
    graph = import_graph(ROOT, PACKAGES)
    assert {"core.cli", "core.specs.run", "server.main", "worker.local"} <= set(graph)  # not vacuous
    assert "core.specs.run" in graph["core.presets"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found_through_a_relative_function_level_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def late():\n    from .. import a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.sub.b"] == {"pkg.a"}  # `from .. import a`: pkg.a, resolved from the relative import
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (pkg / "sub" / "b.py").write_text("def late():\n    return 1\n")
    assert find_cycle(import_graph(tmp_path, ["pkg"])) is None


def test_a_package_importing_its_own_modules_is_no_cycle(tmp_path):
    """``pkg/__init__`` importing ``pkg.x``, which imports ``pkg.y``: Python allows it, and so does the graph."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg import x\n")
    (pkg / "x.py").write_text("from pkg.y import f\n")
    (pkg / "y.py").write_text("def f():\n    return 1\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("import pkg.y\n")
    graph = import_graph(tmp_path, ["pkg", "other"])
    assert graph["pkg"] == {"pkg.x"} and graph["pkg.x"] == {"pkg.y"}  # no edge up to its own package
    assert graph["other"] == {"pkg", "pkg.y"}  # but from outside, pkg.y runs pkg's __init__ first
    assert find_cycle(graph) is None
    (pkg / "y.py").write_text("import other\n")  # now pkg.y -> other -> pkg -> pkg.x -> pkg.y
    assert find_cycle(import_graph(tmp_path, ["pkg", "other"])) == ["other", "pkg", "pkg.x", "pkg.y", "other"]
