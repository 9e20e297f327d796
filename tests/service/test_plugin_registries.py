"""A lab's own attack and training method, plugged in by entry points with no edit of robustlab.

The toy distribution is made inside the test, as ``pip install`` would leave it: modules and a
``*.dist-info`` with ``entry_points.txt`` on ``PYTHONPATH``. Its attack's spec class is
torch-free (validation imports it; the science imports its implementation only when a run
evaluates); its training method is a function named by the entry point.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.service.test_cli import robustlab
from tests.service.test_open_world import PLUGIN as MODELS_AND_DATA
from tests.service.test_open_world import installed_lab

ATTACK_SPEC = '''
"""The spec of a toy attack: torch-free, as validation imports it."""
from typing import ClassVar, Literal

from pydantic import Field

from contract.specs.attacks import AttackSpec
from contract.specs.values import Eps, NormName


class SignNoise(AttackSpec):
    """Random signs of size eps at every pixel, the worst of ``draws`` draws (a weak attack)."""

    title: ClassVar[str] = "random sign noise (a toy)"
    implementation: ClassVar[str] = "toy_lab_science:sign_noise"
    blackbox: ClassVar[bool] = True
    kind: Literal["sign_noise"] = "sign_noise"
    norm: Literal["linf"] = "linf"
    eps: Eps
    draws: int = Field(4, ge=1, le=64)

    def record_fields(self):
        return {**super().record_fields(), "steps": self.draws}
'''
SCIENCE = '''
"""The toy attack's and the toy training method's science."""
import torch
import torch.nn.functional as F

from workers.science.attacks.common import AttackRun, attack_mode
from workers.science.training.common import BatchLoss


def sign_noise(spec, model, x, y, generator):
    worst, still = x.clone(), torch.ones(len(x), dtype=torch.bool, device=x.device)
    with attack_mode(model), torch.no_grad():
        for _ in range(spec.draws):
            signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device) * 2 - 1
            candidate = (x + spec.eps * signs).clamp(0, 1)
            fooled = still & (model(candidate).argmax(1) != y)
            worst[fooled] = candidate[fooled]
            still &= ~fooled
    return AttackRun(worst)


def noise_augmentation(model, x, y, setup):
    noisy = (x + setup.eps * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    with setup.autocast():
        logits = model(noisy)
    losses = F.cross_entropy(logits.float(), y, reduction="none")
    return BatchLoss(loss=losses.mean(), losses=losses.detach(), clean_hits=None,
                     adv_hits=logits.argmax(1) == y)
'''
ENTRY_POINTS = """\
[robustlab.models]
tiny_net = toy_lab_models:build_tiny_net

[robustlab.datasets]
quadrants = toy_lab_models:load_quadrants

[robustlab.attacks]
sign_noise = toy_lab_attack:SignNoise

[robustlab.training_methods]
noise_aug = toy_lab_science:noise_augmentation
"""


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A migrated working directory and an environment in which the toy package is installed."""
    return installed_lab(tmp_path, "toy_lab", {"toy_lab_models": MODELS_AND_DATA,
                                               "toy_lab_attack": ATTACK_SPEC,
                                               "toy_lab_science": SCIENCE}, ENTRY_POINTS)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_plugin_attack_and_training_method_run_end_to_end(
        lab: tuple[Path, dict[str, str]]) -> None:
    work, env = lab
    spec = write(work / "toy.yaml", """\
        name: toy_lab
        kind: train
        dataset: {name: quadrants, kwargs: {n: 400}}
        model: {arch: tiny_net, kwargs: {hidden: 32}}
        adversary: {method: noise_aug, eps: 0.1}
        training: {epochs: 3, batch_size: 32, optimizer: {name: adam, lr: 0.01, weight_decay: 0}}
        evaluation:
          checks: false
          attacks:
            - {kind: sign_noise, eps: 0.2, draws: 3}
            - {kind: pgd, norm: linf, eps: 0.2, steps: 5}
        """)
    robustlab("validate", str(spec), cwd=work, env=env, check=True)
    robustlab("run", str(spec), cwd=work, env=env, check=True)
    rows = json.loads(robustlab("results", "--format", "json", cwd=work, env=env,
                                check=True).stdout)
    by_attack = {row["attack"]: row for row in rows}
    assert {"none", "sign_noise", "pgd", "worst_case"} <= set(by_attack)
    assert {row["train_method"] for row in rows} == {"noise_aug"}
    noise, clean = by_attack["sign_noise"], by_attack["none"]
    assert (noise["eval_norm"], noise["eval_eps"], noise["steps"]) == ("linf", 0.2, 3)
    assert clean["accuracy"] > 0.9
    # The worst case per example is no better than either attack alone.
    assert by_attack["worst_case"]["accuracy"] <= min(noise["accuracy"], by_attack["pgd"]["accuracy"])
    metrics = json.loads(robustlab("metrics", rows[0]["run_id"], "--format", "json", cwd=work,
                                   env=env, check=True).stdout)
    assert [m["step"] for m in metrics if m["name"] == "train_loss"] == [1, 2, 3]


def test_plugin_names_are_checked_like_built_ins(lab: tuple[Path, dict[str, str]]) -> None:
    work, env = lab
    spec = write(work / "bad.yaml", """\
        name: toy_bad
        kind: train
        dataset: {name: quadrants}
        model: {arch: tiny_net}
        adversary: {method: noise_augg, eps: 0.1}
        evaluation:
          attacks: [{kind: sign_noise, eps: 0.2, drawz: 3}]
        """)
    checked = robustlab("validate", str(spec), cwd=work, env=env)
    assert checked.returncode == 2
    lines = checked.stderr.strip().splitlines()
    assert any("adversary.method" in line and "'noise_aug'" in line for line in lines), lines
    assert any("evaluation.attacks.0.drawz" in line and "draws" in line for line in lines), lines
    assert "Traceback" not in checked.stderr
