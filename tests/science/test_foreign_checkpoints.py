"""Checkpoints written elsewhere: bare and wrapped state_dicts, prefixes, the robustness layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from contract.datasets import DATASETS
from contract.records import MemoryReporter
from contract.specs.architecture import ModelConfig
from contract.specs.kinds import EvaluateSpec
from workers.science.context import RunContext
from workers.science.experiments.evaluate import run as evaluate_run
from workers.science.state_dicts import WeightsMismatch, load_foreign, load_source_model

CPU = torch.device("cpu")


def blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of 6x6 grey images, each brighter in its own quadrant (learnable, not trivial)."""
    y = np.arange(n) % 4
    x = rng.random((n, 6, 6)) * 0.6
    for label, (row, col) in enumerate([(0, 0), (0, 3), (3, 0), (3, 3)]):
        x[y == label, row:row + 3, col:col + 3] += 0.35
    return np.clip(x, 0, 1).astype(np.float32), y


@pytest.fixture()
def npz_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x_train, y_train = blobs(rng, 200)
    x_test, y_test = blobs(rng, 101)
    path = tmp_path / "blobs.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def plain_pytorch_linear(npz: Path) -> tuple[nn.Linear, float]:
    """A linear model trained with nothing but PyTorch, and its clean test accuracy."""
    arrays = np.load(npz)
    x = torch.from_numpy(arrays["x_train"]).flatten(1)
    y = torch.from_numpy(arrays["y_train"])
    torch.manual_seed(0)
    net = nn.Linear(36, 4)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        x_test = torch.from_numpy(arrays["x_test"]).flatten(1)
        accuracy = (net(x_test).argmax(1) == torch.from_numpy(arrays["y_test"])).float().mean()
    return net, float(accuracy)


def evaluate_file(path: Path, npz: Path, tmp_path: Path, **source: object) -> dict[str, object]:
    spec = EvaluateSpec.model_validate({
        "name": "foreign", "kind": "evaluate",
        "source": {"checkpoint": str(path), **source},
        "dataset": {"name": "npz", "root": str(npz)},
        "evaluation": {"checks": False,
                       "attacks": [{"kind": "pgd", "norm": "linf", "eps": 0.1, "steps": 3}]},
    })
    reporter = MemoryReporter()
    evaluate_run(spec, RunContext(run_id="r", run_dir=tmp_path, device=CPU, reporter=reporter,
                                  data_dir=tmp_path))
    (clean,) = [row for row in reporter.rows() if row["attack"] == "none"]
    return {**clean, "facts": reporter.facts}


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model_state_dict", "model", "net",
                                  "module.", "_orig_mod.", "model.module."])
def test_a_plain_pytorch_state_dict_evaluates_to_its_own_accuracy(
        wrap: str, npz_data: Path, tmp_path: Path) -> None:
    net, accuracy = plain_pytorch_linear(npz_data)
    state = net.state_dict()
    if wrap.endswith("."):
        payload: object = {f"{wrap}{key}": value for key, value in state.items()}
    elif wrap == "bare":
        payload = state
    else:
        payload = {wrap: state, "epoch": 30, "optimizer": {"lr": 0.5}}
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    clean = evaluate_file(path, npz_data, tmp_path, model={"arch": "linear"})
    assert clean["accuracy"] == accuracy and clean["n"] == 101
    assert (clean["model"], clean["dataset"], clean["train_norm"]) == ("linear", "npz", None)
    facts = clean["facts"]
    assert isinstance(facts, dict)
    assert facts["checkpoint_format"] == "foreign" and facts["data_root"] == str(npz_data)
    assert facts["data_files"] == ["blobs.npz"] and len(facts["data_hash"]) == 64


def test_weights_that_do_not_fit_are_one_line(npz_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3), "fc.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(WeightsMismatch) as caught:
        evaluate_file(path, npz_data, tmp_path, model={"arch": "linear"})
    message = str(caught.value)
    assert "\n" not in message
    assert "do not fit arch 'linear'" in message
    assert "missing keys: bias, weight" in message
    assert "unexpected keys: conv.weight, fc.weight" in message
    torch.save({"weight": torch.zeros(3, 36), "bias": torch.zeros(3)}, path)
    with pytest.raises(WeightsMismatch, match=r"weight is \(3, 36\) in the file but \(4, 36\)"):
        evaluate_file(path, npz_data, tmp_path, model={"arch": "linear"})


def test_a_foreign_file_needs_its_model(npz_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(4, 36), "bias": torch.zeros(4)}, path)
    with pytest.raises(ValueError, match="not a robustlab checkpoint: say what it holds with "
                                         "source.model"):
        evaluate_file(path, npz_data, tmp_path)


class Canary:
    """Unpickling this would create a file: proof that no code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (Path(self.marker),))


def test_files_are_read_with_weights_only(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"weight": torch.zeros(1)}, "hook": Canary(str(marker))}, path)
    with pytest.raises(ValueError, match="weights_only=True refuses"):
        load_source_model(path, CPU, model_cfg=ModelConfig(arch="linear"),
                          info_for=lambda: DATASETS["binary_mnist"])
    assert not marker.exists()


def robustness_checkpoint(path: Path, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """The key layout MadryLab's robustness library saves (``AttackerModel`` in DataParallel)."""
    state: dict[str, torch.Tensor] = {}
    for owner in ("module.", "module.attacker."):
        state[f"{owner}normalizer.new_mean"] = mean.view(3, 1, 1)
        state[f"{owner}normalizer.new_std"] = std.view(3, 1, 1)
        state.update({f"{owner}model.{key}": value for key, value in net.state_dict().items()})
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []},
                "schedule": None, "epoch": 90}, path)


def test_the_robustness_library_layout_loads_into_resnet50(tmp_path: Path) -> None:
    info = DATASETS["restricted_imagenet"]
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(num_classes=info.num_classes).eval()
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    path = tmp_path / "checkpoint.pt.best"
    robustness_checkpoint(path, reference, mean, std)
    model, meta = load_foreign(path, ModelConfig(arch="resnet50"), info, CPU)
    assert meta["state_dict_at"] == "model (robustness library layout)"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
        torch.testing.assert_close(model(x), expected)
