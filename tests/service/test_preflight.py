"""Mistakes caught before anything is recorded: files, run ids and devices this machine lacks.

``validate`` warns (a spec may be meant for another machine), ``validate --here`` refuses,
``run`` refuses in one line naming the field and the value and records nothing, and a run
that reaches a worker anyway fails with the same line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.specs.loading import load_spec_text
from service.recording import record
from service.runner import execute_run
from service.store import migrate
from service.store.repository import Store
from tests.service.test_cli import robustlab

CUDA_AVAILABLE = False
try:  # the tests run on machines with and without a GPU
    import torch

    CUDA_AVAILABLE = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a dependency
    pass

MISSING_ROOT = """\
name: missing_root
kind: train
dataset: {name: npz, root: /no/such/data.npz}
model: {arch: mnist_cnn}
"""
UNKNOWN_RUN = """\
name: unknown_run
kind: evaluate
source: {run: 5e8841302917}
"""
CUDA_DEVICE = """\
name: on_cuda
kind: theory
device: cuda
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "field", "value"), [
    (MISSING_ROOT, "dataset.root", "/no/such/data.npz"),
    (UNKNOWN_RUN, "source.run", "5e8841302917"),
    pytest.param(CUDA_DEVICE, "device", "cuda", marks=pytest.mark.skipif(
        CUDA_AVAILABLE, reason="this machine has CUDA")),
])
def test_validate_warns_here_refuses_and_run_records_nothing(
        tmp_path: Path, text: str, field: str, value: str) -> None:
    robustlab("db", "upgrade", cwd=tmp_path, check=True)
    spec = write(tmp_path, "spec", text)
    warned = robustlab("validate", str(spec), cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert f"warning: {field}: " in warned.stderr and value in warned.stderr
    assert "ok (" in warned.stdout
    refused = robustlab("validate", "--here", str(spec), cwd=tmp_path)
    assert refused.returncode == 2
    assert f"error: {field}: " in refused.stderr and "Traceback" not in refused.stderr
    ran = robustlab("run", str(spec), cwd=tmp_path)
    assert ran.returncode == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and value in lines[0], lines
    listed = robustlab("runs", "--format", "json", cwd=tmp_path, check=True)
    assert listed.stdout.strip() == "[]"


def test_validate_without_here_still_passes_the_paper_specs(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    papers = sorted(str(p) for p in (repo / "specs" / "paper").glob("*.yaml"))
    checked = robustlab("validate", *papers, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_a_run_that_reaches_a_worker_fails_with_the_same_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    store = Store(url)
    (run,) = record(load_spec_text(MISSING_ROOT), store).runs
    ended = execute_run(run.id, store)
    assert ended.status == "failed"
    assert ended.error is not None and ended.error.startswith(
        "dataset.root: /no/such/data.npz does not exist")
    assert "\n" not in ended.error
