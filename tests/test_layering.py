"""The dependency rules of docs/architecture.md, checked: the torch-free parts of core never load torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_FREE = ["core.settings", "core.names", "core.specs.run", "core.specs.overrides", "core.specs.sweep", "core.specs.budget", "core.presets", "core.problems", "core.db",
              "core.db.crud", "core.db.shares", "core.snapshots", "core.gif", "core.summary", "core.submit", "core.cli",
              "core.sweeps", "core.population", "core.eval_import", "core.causal.specs", "core.causal.results", "core.causal.jobs",
              "core.causal.population"]


def loaded_modules(module: str, then: str = "pass") -> set[str]:
    code = f"import sys, {module}; {then}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_torch_free_modules_do_not_import_torch():
    for module in TORCH_FREE:
        modules = loaded_modules(module)
        assert "torch" not in modules, f"{module} loads torch"
        assert "core.ml" not in modules, f"{module} loads core.ml"


def test_core_ml_knows_nothing_of_the_database():
    modules = loaded_modules("core.ml.train")
    assert "torch" in modules  # the check above could pass vacuously if imports were broken
    assert not {m for m in modules if m.startswith(("core.db", "sqlalchemy", "server", "worker"))}


def test_the_server_loads_neither_torch_nor_the_worker():
    app = "server.main.create_app(core.settings.Settings(database_url='sqlite://'))"
    modules = loaded_modules("server.main, core.settings", then=app)
    assert "server.api.runs" in modules  # not vacuous: the app's route modules were imported
    assert not {m for m in modules if m == "torch" or m.startswith(("torch.", "core.ml", "worker"))}


def test_the_worker_never_imports_the_server():
    for module in ("worker.execute", "worker.local"):
        assert not {m for m in loaded_modules(module) if m.startswith("server")}, f"{module} loads server"
