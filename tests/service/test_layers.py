"""Dependencies run one way: the records and the runner's recording half import no torch.

The science imports the spec contract and ``workers.science.records``; the plumbing imports
those records to write them. Neither side may drag torch into a process that only records
(``robustlab submit``, listings, the dashboard), so a fresh interpreter checks ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dashboard import launch
from service.cli import dashboard as cli_dashboard

REPO = Path(__file__).resolve().parents[2]
TORCH_FREE = ("workers.science.records", "service.recording", "service.store.repository",
              "service.results", "service.analysis.compare", "service.cli")


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
