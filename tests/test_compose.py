"""docker-compose.yml and worker/Dockerfile, checked for structure (Docker cannot run here).

Every command must parse with the real ``circuitboard`` argument parser, every environment key
must be a real setting, every dependency must name a service that can satisfy its condition, and
the topology must be the documented one: PostgreSQL, Redis with an append-only file, a one-off
migrate job, a server without an embedded worker, and scalable CPU and GPU workers (the GPU one
with an NVIDIA device reservation). The same topology runs as real processes in
tests/worker/test_dispatchers.py (PostgreSQL + Redis + ``circuitboard worker --broker``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from core.cli import build_parser
from core.names import queue_for_device
from core.settings import Settings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("migrate", "server", "worker-cpu", "worker-gpu")


def command(name: str):
    """The service's command, parsed by the circuitboard CLI's own parser."""
    argv = SERVICES[name]["command"]
    assert argv[0] == "circuitboard", argv
    return build_parser().parse_args(argv[1:])


def test_the_services_are_the_documented_topology():
    assert set(SERVICES) == {"postgres", "redis", "migrate", "server", "worker-cpu", "worker-gpu"}
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    redis_command = SERVICES["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"  # queued messages survive a restart


def test_named_volumes_keep_the_data():
    assert {"pgdata", "redisdata"} <= set(COMPOSE["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert "redisdata:/data" in SERVICES["redis"]["volumes"]
    for name in SERVICES:
        for volume in SERVICES[name].get("volumes", []):
            assert volume.split(":")[0] in COMPOSE["volumes"], (name, volume)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_build_the_one_image_and_reach_the_database_and_broker(name):
    service = SERVICES[name]
    assert service["build"]["context"] == "."
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    env = service["environment"]
    database, broker = env["CIRCUITBOARD_DATABASE_URL"], env["CIRCUITBOARD_BROKER_URL"]
    assert re.match(r"postgresql://circuitboard:[^@]+@postgres:5432/circuitboard$", database), database
    assert broker == "redis://redis:6379/0"
    settings_keys = {f"CIRCUITBOARD_{field.upper()}" for field in Settings.model_fields}
    for key in env:
        assert key in settings_keys or not key.startswith("CIRCUITBOARD_"), f"{name}: {key} is no setting"
    resolved = {key[len("CIRCUITBOARD_"):].lower(): re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
                for key, value in env.items() if key.startswith("CIRCUITBOARD_")}
    Settings(**resolved)  # the values (with their defaults filled in) are valid settings


def test_every_dependency_names_a_service_that_can_meet_its_condition():
    for name, service in SERVICES.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in SERVICES, (name, target)
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target}'s health, which has no check"
            else:
                assert rule["condition"] == "service_completed_successfully" and target == "migrate"
    for name in ("server", "worker-cpu", "worker-gpu"):
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["migrate"]["restart"] == "no"  # one-off


def test_commands_parse_and_say_what_each_service_is():
    assert command("migrate").fn.__name__ == "cmd_migrate"
    server = command("server")
    assert (server.fn.__name__, server.no_worker, server.host, server.port) == ("cmd_serve", True, "0.0.0.0", 8000)
    assert "8000" in SERVICES["server"]["ports"][0].split(":")[-1]
    for name, queue, device in (("worker-cpu", "cpu", "cpu"), ("worker-gpu", "gpu", "cuda:0")):
        worker = command(name)
        assert (worker.fn.__name__, worker.queue, worker.device) == ("cmd_worker", [queue], device)
        assert queue_for_device(device) == queue
        assert SERVICES[name]["stop_grace_period"]  # time for SIGTERM's checkpoint


def test_workers_scale_and_the_gpu_worker_reserves_a_gpu():
    for name in ("worker-cpu", "worker-gpu"):
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]  # --scale needs both absent
        assert "healthcheck" in SERVICES[name]
    devices = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "cu" in SERVICES["worker-gpu"]["build"]["args"]["TORCH_INDEX_URL"]  # a CUDA build of torch
    assert SERVICES["worker-gpu"]["profiles"] == ["gpu"]  # machines without a GPU skip it


def test_healthchecks_are_commands():
    for name, service in SERVICES.items():
        if name == "migrate":
            continue
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2, name


def test_the_dockerfile_copies_what_the_wheel_needs_and_installs_it_as_a_package():
    text = (ROOT / "worker" / "Dockerfile").read_text()
    copied = set()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
                copied.add(source)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    wanted = {pattern.rstrip("*") for pattern in packages["include"]} | {"pyproject.toml"}
    assert wanted <= copied, f"the image builds without {sorted(wanted - copied)}"
    installs = [line for line in text.splitlines() if line.startswith("RUN pip install") and "torch" not in line]
    # not editable: templates, static files and migrations come from the wheel, not from the source tree
    assert installs == ['RUN pip install ".[ml]" && rm -rf /src'], installs
    assert "torch==${TORCH_VERSION}" in text and "TORCH_INDEX_URL" in text
    assert re.search(r'^CMD \["circuitboard", "serve"', text, re.M)
