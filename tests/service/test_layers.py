"""Dependencies run one way: contract <- workers <- service <- dashboard.

import-linter's contracts (``pyproject.toml``) are the rule; these tests check that they hold
on the tree, that breaking one fails ``lint-imports``, and that the light commands really stay
light: a process that only validates, lists or records never imports torch or the science.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard import launch
from service.cli import dashboard as cli_dashboard

REPO = Path(__file__).resolve().parents[2]
TORCH_FREE = ("contract.records", "contract.columns", "contract.specs.loading",
              "contract.specs.schema", "service.recording", "service.store.repository",
              "service.results", "service.analysis.compare", "service.cli")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("contract", "workers", "service", "dashboard")


def test_records_and_the_recording_half_import_no_torch() -> None:
    code = (f"import sys, importlib\nfor name in {TORCH_FREE!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_imports_neither_pandas_nor_the_dashboard_at_start_up() -> None:
    """Every command pays for what ``service.cli`` imports; pandas alone is a second here."""
    code = ("import sys, service.cli\n"
            "print(sorted(m for m in ('pandas', 'dashboard.launch', 'celery', 'matplotlib',"
            " 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_dashboard_command_defaults_to_the_launchers_loopback() -> None:
    assert cli_dashboard.LOOPBACK == launch.LOOPBACK


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the packages under ``root`` (they shadow the installed ones)."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})


def test_the_layer_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("workers/science/losses.py", "import service.settings", "Layers point one way"),
    ("contract/catalog.py", "import torch", "The contract imports no heavy framework"),
    ("service/results.py", "import sqlalchemy", "Only the store imports SQLAlchemy"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str,
                                              broken: str) -> None:
    """The same check on a copy of the tree with one forbidden import added."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # the forbidden import\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout


@pytest.mark.parametrize("command", [
    ["validate", "specs/quickstart.yaml", "specs/paper/e1_theory.yaml"],
    ["runs"],
])
def test_validate_and_runs_import_only_the_contract_and_the_store(tmp_path: Path,
                                                                  command: list[str]) -> None:
    code = ("import sys\nfrom service.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as exit:\n"
            "    assert not exit.code, exit.code\n"
            "heavy = ('torch', 'torchvision', 'workers', 'celery', 'dashboard', 'streamlit',"
            " 'matplotlib', 'pandas')\n"
            "print('HEAVY', sorted(m for m in heavy if m in sys.modules))")
    env = {**os.environ, "ROBUSTLAB_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    subprocess.run([sys.executable, "-m", "service.cli", "db", "upgrade"], cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=120)
    result = subprocess.run([sys.executable, "-c", code, *command], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
