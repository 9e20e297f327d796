"""The deployment files: no Docker engine runs here, so check what can be checked without one.

The compose file parses; every robustlab service's command is a real ``robustlab`` command
whose options parse; the services start in the right order and share the same volumes at the
paths their settings name; ``.env.example`` names only real settings.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import click
import pytest
import yaml

from service.cli import main
from service.settings import Settings
from tests.workers.helpers import REPO, ROBUSTLAB

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ROBUSTLAB_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)
SHARED_DIRS = {"ROBUSTLAB_ARTIFACT_DIR": "artifacts", "ROBUSTLAB_RUNS_DIR": "runs",
               "ROBUSTLAB_DATA_DIR": "data"}


def _leaf(words: list[str]) -> tuple[click.Command, list[str]]:
    """The click command that ``robustlab WORDS...`` reaches, and the arguments left for it."""
    command: click.Command = main
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


def test_the_compose_file_has_every_service_of_a_deployment() -> None:
    assert {"redis", "postgres", "migrate", "worker", "beat", "dashboard"} <= set(SERVICES)
    assert "healthcheck" in SERVICES["postgres"] and "healthcheck" in SERVICES["redis"]
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ROBUSTLAB_SERVICES:
        if name != "migrate":
            assert SERVICES[name]["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"}, name


def test_the_worker_reserves_a_gpu_and_runs_on_it() -> None:
    worker = SERVICES["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    command = worker["command"]
    assert command[command.index("--device") + 1].startswith("cuda")
    assert worker["stop_signal"] == "SIGQUIT"  # cold shutdown: the run goes back on the queue


@pytest.mark.parametrize("name", ROBUSTLAB_SERVICES)
def test_each_service_command_is_a_robustlab_command_whose_options_parse(name: str) -> None:
    words = list(SERVICES[name]["command"])
    command, arguments = _leaf(words)
    assert command is not main and not isinstance(command, click.Group), words
    command.make_context(command.name or "", list(arguments))  # raises on an unknown option or value

    path = words[: len(words) - len(arguments)]
    shown = subprocess.run([ROBUSTLAB, *words, "--help"], capture_output=True, text=True,
                           cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "100"})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"Usage: robustlab {' '.join(path)} ")


@pytest.mark.parametrize("name", ROBUSTLAB_SERVICES)
def test_each_service_shares_the_volumes_its_settings_name(name: str) -> None:
    service = SERVICES[name]
    mounts = dict(volume.split(":")[::-1] for volume in service["volumes"])
    for variable, volume in SHARED_DIRS.items():
        assert mounts[service["environment"][variable]] == volume
        assert volume in COMPOSE["volumes"]


def test_the_image_runs_robustlab_and_leaves_the_environment_out() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["robustlab"]' in dockerfile  # so a service's command is a subcommand
    assert "requirements.lock" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "data", "runs", "artifacts"} <= set(ignored)


def test_env_example_names_only_real_settings() -> None:
    lines = [line for line in (REPO / ".env.example").read_text().splitlines()
             if line and not line.startswith("#")]
    names = {line.split("=", 1)[0] for line in lines}
    fields = {f"ROBUSTLAB_{field.upper()}" for field in Settings.model_fields}
    robustlab_names = {name for name in names if name.startswith("ROBUSTLAB_")}
    assert robustlab_names and robustlab_names <= fields
    compose_text = (REPO / "docker-compose.yml").read_text()
    for name in names:
        assert f"${{{name}" in compose_text, f"{name} is not used by docker-compose.yml"


def test_deployment_guide_names_the_commands_it_uses() -> None:
    guide = (REPO / "docs" / "deployment.md").read_text()
    for command in ("robustlab submit", "robustlab worker", "robustlab beat",
                    "robustlab schedule add", "robustlab cancel", "docker compose up"):
        assert command in guide
