"""The threat models: every call keeps points in the ball and in [0, 1]; steps and starts are right."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch

from contract.specs.values import NormName
from workers.science.threat_models import THREAT_MODELS, ThreatModel, threat_model

NORMS = sorted(THREAT_MODELS)
SLACK = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def distance(norm: str, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Per-example distance (B,) in the norm of the threat model."""
    delta = (x - x0).flatten(1)
    return delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)


def images(b: int = 16, shape: tuple[int, ...] = (1, 6, 6), seed: int = 0) -> torch.Tensor:
    """Random images that include exact 0 and 1 pixels (where clipping matters)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((b, *shape), generator=g)
    x[:, :, 0, :] = 0.0
    x[:, :, 1, :] = 1.0
    return x


def test_registry_equals_the_spec_literal() -> None:
    assert set(THREAT_MODELS) == set(get_args(NormName))


def test_unknown_norm_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="linf, l2"):
        threat_model("l1", images(), 0.1, 0.01)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("eps", [0.05, 0.6, 3.0])
def test_random_start_and_projection_stay_in_ball_and_box(norm: str, eps: float) -> None:
    x0 = images()
    ball: ThreatModel = THREAT_MODELS[norm](x0, eps, eps / 4)
    start = ball.random_perturb(x0)
    far = x0 + 5 * torch.randn_like(x0)  # far outside both the ball and the box
    for point in (start, ball.project(far), ball.project(ball.step(start, torch.randn_like(x0)))):
        assert point.min() >= 0 and point.max() <= 1
        assert (distance(norm, point, x0) <= eps * (1 + SLACK) + 1e-7).all()


@pytest.mark.parametrize("norm", NORMS)
def test_projection_keeps_points_already_inside_and_is_idempotent(norm: str) -> None:
    x0 = images()
    ball = THREAT_MODELS[norm](x0, 0.3, 0.1)
    inside = ball.random_perturb(x0)
    assert torch.allclose(ball.project(inside), inside, atol=1e-6)
    once = ball.project(x0 + torch.randn_like(x0))
    assert torch.allclose(ball.project(once), once, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_eps_zero_is_the_point_itself_and_never_nan(norm: str) -> None:
    x0 = images()
    ball = THREAT_MODELS[norm](x0, 0.0, 0.0)
    assert torch.equal(ball.random_perturb(x0), x0)
    assert torch.equal(ball.project(x0 + torch.randn_like(x0)), x0)
    stepped = ball.step(x0, torch.zeros_like(x0))  # a zero gradient must not divide by zero
    assert not stepped.isnan().any()
    assert torch.equal(ball.project(stepped), x0)


def test_linf_step_is_the_gradient_sign() -> None:
    x0 = torch.full((4, 1, 3, 3), 0.5)
    grad = torch.randn_like(x0)
    grad[0, 0, 0, 0] = 0.0
    moved = THREAT_MODELS["linf"](x0, 0.3, 0.1).step(x0, grad)
    assert torch.allclose(moved - x0, 0.1 * grad.sign())


def test_l2_step_has_length_step_size_along_the_gradient() -> None:
    x0 = torch.full((4, 1, 3, 3), 0.5)
    grad = torch.randn_like(x0) * torch.tensor([1e-6, 1.0, 10.0, 1e3]).view(-1, 1, 1, 1)
    moved = THREAT_MODELS["l2"](x0, 1.0, 0.2).step(x0, grad)
    delta = (moved - x0).flatten(1)
    assert torch.allclose(delta.norm(dim=1), torch.full((4,), 0.2), rtol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(delta, grad.flatten(1), dim=1)
    assert torch.allclose(cosine, torch.ones(4), atol=1e-5)


def test_l2_projection_scales_each_example_onto_its_own_sphere() -> None:
    x0 = torch.full((3, 1, 4, 4), 0.5)
    delta = torch.randn_like(x0) * 0.01
    delta[1] *= 100  # only this one is outside a ball of radius 0.2
    projected = THREAT_MODELS["l2"](x0, 0.2, 0.1).project(x0 + delta)
    assert torch.allclose(projected[[0, 2]], (x0 + delta)[[0, 2]])
    assert math.isclose(float((projected[1] - x0[1]).norm()), 0.2, rel_tol=1e-5)
    cosine = torch.nn.functional.cosine_similarity((projected[1] - x0[1]).flatten(), delta[1].flatten(), dim=0)
    assert float(cosine) > 1 - 1e-5


def test_l2_random_start_is_uniform_in_the_ball() -> None:
    """In n dimensions P(r <= eps * q^(1/n)) = q, and the direction has no preferred side."""
    n_samples, eps = 20_000, 0.1
    x0 = torch.full((n_samples, 1, 1, 2), 0.5)  # n = 2, far from the box
    torch.manual_seed(0)
    delta = THREAT_MODELS["l2"](x0, eps, eps).random_perturb(x0) - x0
    radius = delta.flatten(1).norm(dim=1)
    assert (radius <= eps * (1 + SLACK)).all()
    for q in (0.25, 0.5, 0.75):
        assert abs(float((radius <= eps * q**0.5).float().mean()) - q) < 0.02
    assert float(delta.flatten(1).mean(0).abs().max()) < 0.002


def test_linf_random_start_is_uniform_per_pixel() -> None:
    x0 = torch.full((5_000, 1, 2, 2), 0.5)
    torch.manual_seed(0)
    delta = THREAT_MODELS["linf"](x0, 0.2, 0.05).random_perturb(x0) - x0
    assert float(delta.abs().max()) <= 0.2 + 1e-7
    for q in (0.25, 0.5, 0.75):
        assert abs(float((delta.abs() <= 0.2 * q).float().mean()) - q) < 0.02


@pytest.mark.parametrize("norm", NORMS)
def test_a_generator_makes_random_starts_reproducible(norm: str) -> None:
    x0 = images()
    ball = THREAT_MODELS[norm](x0, 0.2, 0.05)
    first = ball.random_perturb(x0, torch.Generator().manual_seed(3))
    again = ball.random_perturb(x0, torch.Generator().manual_seed(3))
    other = ball.random_perturb(x0, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
