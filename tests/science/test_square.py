"""The Square Attack (Andriushchenko et al. 2020): black-box manners, schedule, ball and box, and
torchattacks' Square as a yardstick on a small adversarially trained CNN."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

from tests.science.attack_cases import MnistCase, Recorder, in_ball, within_own_ball
from workers.science.attacks import square
from workers.science.attacks.square import fraction_changed
from workers.science.threat_models import THREAT_MODELS

NORMS = sorted(THREAT_MODELS)
EPS = {"linf": 0.05, "l2": 0.5}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 10 * 10, 10))


def images(n: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 10, 10), generator=torch.Generator().manual_seed(seed))


def test_the_schedule_halves_p_as_in_the_paper() -> None:
    assert fraction_changed(0.8, 0, 10_000) == 0.8
    assert fraction_changed(0.8, 11, 10_000) == 0.4
    assert fraction_changed(0.8, 9_000, 10_000) == pytest.approx(0.8 / 512)
    assert fraction_changed(0.8, 60, 1_000) == pytest.approx(0.8 / 16)  # rescaled: 600 of 10k
    assert fraction_changed(0.8, 60, 1_000, rescale=False) == pytest.approx(0.8 / 4)


@pytest.mark.parametrize("norm", NORMS)
def test_square_is_black_box_stays_in_the_ball_and_spends_its_queries(norm: str) -> None:
    x = images()
    model = Recorder(conv_net())
    with torch.no_grad():
        y = model.model(x).argmax(1)
    eps = EPS[norm]
    x_adv = square(model, x, y, norm=norm, eps=eps, queries=40,
                   generator=torch.Generator().manual_seed(0))
    assert not any(model.grad_enabled), "a score-based attack never asks for gradients"
    assert len(model.inputs) <= 40 + 2  # clean, start, one per query
    for seen in model.inputs[1:]:
        assert within_own_ball(norm, seen, x, eps)
    assert in_ball(norm, x_adv, x, eps)
    if norm == "linf":  # every pixel at a corner of the ball, unless the box cut it
        moved = (x_adv - x).abs()
        assert bool((((moved - eps).abs() < 1e-6) | (x_adv == 0) | (x_adv == 1)).all())
    with torch.no_grad():
        assert int((model.model(x_adv).argmax(1) == y).sum()) < len(y)


@pytest.mark.parametrize("norm", NORMS)
def test_square_eps_zero_seed_and_restarts(norm: str) -> None:
    x = images(n=16, seed=1)
    model = conv_net(seed=1)
    with torch.no_grad():
        y = model(x).argmax(1)
    assert torch.equal(square(model, x, y, norm=norm, eps=0.0), x)

    def run(seed: int, restarts: int = 1) -> torch.Tensor:
        return square(model, x, y, norm=norm, eps=EPS[norm], queries=20, restarts=restarts,
                      generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    with torch.no_grad():
        once = int((model(run(5)).argmax(1) == y).sum())
        twice = int((model(run(5, restarts=3)).argmax(1) == y).sum())
    assert twice <= once


def test_square_refuses_bad_arguments() -> None:
    x, y = images(n=2), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="queries >= 0"):
        square(conv_net(), x, y, norm="linf", eps=0.1, queries=-1)
    with pytest.raises(ValueError, match="p_init in"):
        square(conv_net(), x, y, norm="linf", eps=0.1, p_init=0.0)
    with pytest.raises(ValueError, match="unknown norm"):
        square(conv_net(), x, y, norm="l1", eps=0.1)


def test_square_is_no_weaker_than_torchattacks(robust_small_cnn: MnistCase) -> None:
    """Same model, digits, radius and queries: at most one example in 100 more survive ours."""
    case, queries = robust_small_cnn, 300
    ours = square(case.model, case.x, case.y, norm="linf", eps=0.3, queries=queries,
                  generator=torch.Generator().manual_seed(0))
    theirs = torchattacks.Square(case.model, norm="Linf", eps=0.3, n_queries=queries)(case.x, case.y)
    with torch.no_grad():
        survive_ours = int((case.model(ours).argmax(1) == case.y).sum())
        survive_theirs = int((case.model(theirs).argmax(1) == case.y).sum())
    assert in_ball("linf", ours, case.x, 0.3)
    assert survive_ours <= survive_theirs + len(case.y) // 100, (survive_ours, survive_theirs)
