"""The field recipes of ``specs/recipes/`` validate, and each runs through ``robustlab run``.

CIFAR-10 is not on these machines: each recipe runs on a generated CIFAR-shaped npz (32x32x3,
10 classes, a few dozen images) with ``--set`` overrides that keep its method, schedule kind,
EMA and selection but make it tiny (one or two epochs, narrow networks, one attack step).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contract.specs.kinds import TrainSpec
from contract.specs.loading import load_spec_file
from tests.service.test_cli import robustlab

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "specs" / "recipes"
TINY_ATTACK = "evaluation.attacks=[{kind: pgd, norm: linf, eps: 8/255, steps: 1}]"

SMALL: dict[str, list[str]] = {
    "pgd_at_preact_resnet18": [
        "training.epochs=2", "adversary.steps=1",
        "training.validation_attack={kind: pgd, norm: linf, eps: 8/255, steps: 1}",
    ],
    "trades_wrn34_10": [
        "training.epochs=1", "adversary.steps=1",
        "model.kwargs={depth: 10, widen_factor: 1, sub_block1: true, normalization: none}",
    ],
    "fast_at_preact_resnet18": ["training.epochs=1", "adversary.overfit_check_examples=4",
                                "adversary.overfit_check_steps=1"],
    "ema_dm_wrn28_10": [
        "training.epochs=1", "adversary.steps=1",
        "model.kwargs={depth: 10, width: 1, activation: swish}",
    ],
}


def cifar_shaped(path: Path) -> Path:
    """24 training and 8 test images, uint8 32x32x3, labels 0..9."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(24) % 10,
             x_test=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(8) % 10)
    return path


def test_every_recipe_has_its_smoke_settings() -> None:
    assert {p.stem for p in RECIPES.glob("*.yaml")} == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_recipe_validates_and_names_its_paper(name: str) -> None:
    spec = load_spec_file(RECIPES / f"{name}.yaml").spec
    assert isinstance(spec, TrainSpec) and spec.name == name
    assert spec.dataset.name == "cifar10" and spec.adversary.eps == pytest.approx(8 / 255)
    text = (RECIPES / f"{name}.yaml").read_text()
    assert "Reported" in text and "et al." in text


@pytest.mark.parametrize("name", sorted(SMALL))
def test_recipe_runs_through_the_cli_on_cifar_shaped_data(name: str, tmp_path: Path) -> None:
    robustlab("db", "upgrade", cwd=tmp_path, check=True)
    npz = cifar_shaped(tmp_path / "cifar_like.npz")
    spec = load_spec_file(RECIPES / f"{name}.yaml").spec
    assert isinstance(spec, TrainSpec)
    validation = ", validation: 8" if spec.dataset.validation else ""
    overrides = [f"dataset={{name: npz, root: {npz}{validation}}}", "training.batch_size=16",
                 "evaluation.checks=off", TINY_ATTACK, "device=cpu", *SMALL[name]]
    args = [item for override in overrides for item in ("--set", override)]
    robustlab("run", str(RECIPES / f"{name}.yaml"), *args, cwd=tmp_path, check=True)
    (run,) = json.loads(robustlab("runs", "--format", "json", cwd=tmp_path, check=True).stdout)
    assert run["status"] == "succeeded", run
    shown = json.loads(robustlab("runs", "show", run["id"], "--format", "json", cwd=tmp_path,
                                 check=True).stdout)
    checkpoints = {row["checkpoint"] for row in shown["results"]}
    if name == "pgd_at_preact_resnet18":  # piecewise, validation, best_robust, both evaluated
        assert checkpoints == {"best", "final"}
        assert shown["selected"]["checkpoint"] == "best"
        assert shown["selected"]["metric"] == "val_robust_accuracy"
        assert shown["provenance"]["validation"]["examples"] == 8
    else:
        assert checkpoints == {"final"}
        assert shown["selected"]["checkpoint"] == "final"
