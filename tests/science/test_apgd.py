"""APGD (Croce & Hein 2020): closed forms, invariants, manners, and torchattacks as a yardstick.

APGD must reach a linear model's exact worst case, keep every iterate in the ball and the box,
return the inputs at eps 0, be reproducible from a seed, and on a small adversarially trained
CNN be no weaker than torchattacks' APGD and APGD-T (same iterations) by more than one example
in 100.
"""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

from tests.science.attack_cases import (
    MnistCase,
    Recorder,
    accuracy,
    batch,
    in_ball,
    mlp,
    own_labels,
    within_own_ball,
)
from workers.science.attacks import apgd, exact_linear_attack
from workers.science.attacks.apgd import checkpoints
from workers.science.attacks.dlr import dlr_loss, margin, ranked_targets, targeted_dlr_loss
from workers.science.losses import classification_loss
from workers.science.threat_models import THREAT_MODELS

NORMS = sorted(THREAT_MODELS)
EPS = {"linf": 0.1, "l2": 0.5}
VARIANTS = [{"loss": "ce"}, {"loss": "dlr"}, {"targeted": True, "n_target_classes": 3}]
TORCHATTACKS_NORM = {"linf": "Linf", "l2": "L2"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_step_size_checkpoints_follow_the_paper() -> None:
    """p_1 = 0.22, periods shrinking by 0.03 down to 0.06 (reference rounding)."""
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == list(range(2, 11))
    assert checkpoints(0) == []


@pytest.mark.parametrize("norm", NORMS)
def test_apgd_reaches_the_exact_worst_case_of_a_linear_model(norm: str) -> None:
    """Inside the box (pixels in [0.25, 0.75], moves <= 0.2) the worst case is a closed form.
    APGD attacks the clean-correct examples only (the others count as broken already)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    x = 0.25 + 0.5 * torch.rand(32, 1, 4, 4)
    y = torch.where(torch.rand(32) > 0.5, 1, -1)
    eps = {"linf": 0.1, "l2": 0.2}[norm]
    x_adv = apgd(model, x, y, norm=norm, eps=eps, steps=100,
                 generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reached = classification_loss(model(x_adv), y).double()
        attacked = (model(x).flatten() * y) > 0  # clean-correct: the others are already lost
    exact = nn.functional.softplus(-exact_linear_attack(model, x, y, norm=norm, eps=eps).margin)
    assert 8 <= int(attacked.sum()) <= 24
    assert float(((reached - exact).abs() / exact)[attacked].max()) < 1e-4
    assert torch.equal(x_adv[~attacked], x[~attacked])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("variant", VARIANTS, ids=["ce", "dlr", "targeted"])
def test_every_iterate_stays_in_the_ball_and_the_box(norm: str, variant: dict) -> None:
    """Restarts and targets run on the examples still standing: every batch is checked."""
    x = batch()
    model = Recorder(mlp())
    y = own_labels(model.model, x)
    eps = EPS[norm]
    x_adv = apgd(model, x, y, norm=norm, eps=eps, steps=12, restarts=2, **variant)
    assert len(model.inputs) > 13
    for seen in model.inputs:
        assert within_own_ball(norm, seen, x, eps)
    assert in_ball(norm, x_adv, x, eps)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("variant", VARIANTS, ids=["ce", "dlr", "targeted"])
def test_eps_zero_is_clean_and_a_seed_fixes_the_result(norm: str, variant: dict) -> None:
    x = batch()
    model = mlp()
    y = own_labels(model, x)
    assert torch.equal(apgd(model, x, y, norm=norm, eps=0.0, **variant), x)

    def run(seed: int) -> torch.Tensor:
        return apgd(model, x, y, norm=norm, eps=EPS[norm], steps=10, **variant,
                    generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize("training", [True, False])
def test_apgd_restores_the_mode_and_leaves_parameters_alone(training: bool) -> None:
    x = batch()
    model = Recorder(nn.Sequential(mlp(), nn.Dropout(0.5)))
    y = own_labels(model.model.eval(), x)
    model.train(training)
    apgd(model, x, y, norm="linf", eps=0.1, steps=5, targeted=True, n_target_classes=2)
    assert model.training is training
    assert not any(model.modes)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_apgd_attacks_only_clean_correct_examples_and_costs_steps_plus_one() -> None:
    x = batch(n=20)
    model = Recorder(mlp())
    y = own_labels(model.model, x)  # 5 of 20 wrong already
    apgd(model, x, y, norm="linf", eps=0.01, steps=7)  # too small to break any: one full run
    sizes = [len(seen) for seen in model.inputs]
    assert sizes == [20] + [15] * 8


def test_apgd_is_stronger_than_its_start_and_beats_few_steps() -> None:
    x = batch(n=64, seed=1)
    model = mlp(seed=1)
    y = own_labels(model, x)
    few = apgd(model, x, y, norm="linf", eps=0.05, steps=1, generator=torch.Generator().manual_seed(0))
    many = apgd(model, x, y, norm="linf", eps=0.05, steps=50, generator=torch.Generator().manual_seed(0))
    assert accuracy(model, many, y) < accuracy(model, few, y) < accuracy(model, x, y)


def test_apgd_refuses_bad_arguments() -> None:
    x = batch(n=4)
    model = mlp(num_outputs=4)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown APGD loss 'hinge'"):
        apgd(model, x, y, norm="linf", eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="n_target_classes < the number of classes"):
        apgd(model, x, y, norm="linf", eps=0.1, targeted=True, n_target_classes=4)
    with pytest.raises(ValueError, match="unknown norm"):
        apgd(model, x, y, norm="l1", eps=0.1)
    with pytest.raises(ValueError, match="inputs must be images in"):
        apgd(model, x * 3, y, norm="linf", eps=0.1)
    with pytest.raises(ValueError, match="K >= 3"):
        apgd(mlp(num_outputs=2), x, y, norm="linf", eps=0.1, loss="dlr")


def test_dlr_losses_are_the_closed_forms_and_scale_invariant() -> None:
    z = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 1.0, 0.0]])
    y = torch.tensor([0, 0])
    assert torch.allclose(margin(z, y), torch.tensor([2.0, -2.0]))
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-2.0 / 2.5, 2.0 / 2.0]))
    target = ranked_targets(z, 2)
    assert target.tolist() == [1, 2]
    expected = torch.tensor([-(3.0 - 1.0) / (3.0 - 0.5 * (0.5 - 1.0)), -(0.0 - 1.0) / (2.0 - 0.0)])
    assert torch.allclose(targeted_dlr_loss(z, y, target), expected)
    for loss in (lambda v: dlr_loss(v, y), lambda v: targeted_dlr_loss(v, y, target)):
        assert torch.allclose(loss(5 * z + 7), loss(z), atol=1e-6)


# --------------------------------------------------------------------------- against torchattacks


def _ours_and_theirs(case: MnistCase, ours: torch.Tensor, theirs: torch.Tensor) -> tuple[int, int]:
    with torch.no_grad():
        return (int((case.model(ours).argmax(1) == case.y).sum()),
                int((case.model(theirs).argmax(1) == case.y).sum()))


@pytest.mark.parametrize("targeted", [False, True], ids=["apgd-ce", "apgd-t"])
def test_apgd_is_no_weaker_than_torchattacks(robust_small_cnn: MnistCase, targeted: bool) -> None:
    """Same model, digits, radius and iterations: at most one example in 100 more survive ours."""
    case, steps = robust_small_cnn, 20
    ours = apgd(case.model, case.x, case.y, norm="linf", eps=0.3, steps=steps, targeted=targeted,
                n_target_classes=9, generator=torch.Generator().manual_seed(0))
    attack = (torchattacks.APGDT(case.model, norm="Linf", eps=0.3, steps=steps, n_classes=10)
              if targeted else torchattacks.APGD(case.model, norm="Linf", eps=0.3, steps=steps))
    theirs = attack(case.x, case.y)
    survive_ours, survive_theirs = _ours_and_theirs(case, ours, theirs)
    assert in_ball("linf", ours, case.x, 0.3)
    assert survive_ours <= survive_theirs + len(case.y) // 100, (survive_ours, survive_theirs)
    assert survive_ours < int((case.model(case.x).argmax(1) == case.y).sum()), "nothing broken"
