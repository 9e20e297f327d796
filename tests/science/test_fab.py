"""FAB (Croce & Hein 2020): its projection is exact, it is minimum-norm on a linear model, and it
keeps the manners of every attack (ball, box, eps 0, seed, mode, parameters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize
from torch import nn

from tests.science.attack_cases import Recorder, batch, in_ball, mlp, norms, own_labels
from workers.science.attacks import fab
from workers.science.attacks.fab import boundary_projection
from workers.science.threat_models import THREAT_MODELS

NORMS = sorted(THREAT_MODELS)
EPS = {"linf": 0.1, "l2": 0.5}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _solver_minimum(x: np.ndarray, w: np.ndarray, c: float, norm: str) -> float | None:
    """min ||d|| with w.d = c and 0 <= x + d <= 1 by a generic solver (None: infeasible)."""
    d = len(x)
    bounds = [(-v, 1 - v) for v in x]
    if norm == "linf":  # variables (d, t): minimise t with -t <= d_i <= t
        upper = np.r_[np.c_[np.eye(d), -np.ones(d)], np.c_[-np.eye(d), -np.ones(d)]]
        res = linprog(np.r_[np.zeros(d), 1.0], A_ub=upper, b_ub=np.zeros(2 * d),
                      A_eq=np.r_[w, 0.0][None], b_eq=[c], bounds=[*bounds, (0, None)])
        return float(res.fun) if res.status == 0 else None
    res = minimize(lambda v: float(v @ v), np.zeros(d), method="SLSQP", bounds=bounds,
                   constraints=[{"type": "eq", "fun": lambda v: w @ v - c}])
    return float(np.sqrt(res.fun)) if res.success else None


@pytest.mark.parametrize("norm", NORMS)
def test_boundary_projection_is_the_minimum_norm_point_in_the_box(norm: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 8, generator=g, dtype=torch.float64)
    w = torch.randn(24, 8, generator=g, dtype=torch.float64)
    c = torch.randn(24, generator=g, dtype=torch.float64)
    d = boundary_projection(x, w, c, norm)
    assert ((x + d) >= -1e-12).all() and ((x + d) <= 1 + 1e-12).all()
    solved = 0
    for i in range(24):
        best = _solver_minimum(x[i].numpy(), w[i].numpy(), float(c[i]), norm)
        if best is None:  # out of the box's reach: the farthest point along w
            continue
        solved += 1
        assert float((w[i] * d[i]).sum()) == pytest.approx(float(c[i]), abs=1e-9)
        assert float(norms(d[i : i + 1], norm)[0]) == pytest.approx(best, abs=1e-6)
    assert solved >= 12


@pytest.mark.parametrize("norm", NORMS)
def test_fab_finds_the_minimal_perturbation_of_a_linear_model(norm: str) -> None:
    """Two-class linear model: the boundary is a hyperplane, and the minimal perturbation in the
    box is its exact projection (checked against a solver above). FAB must break every example
    a bit closer than eps and none farther."""
    torch.manual_seed(0)
    layer = nn.Linear(16, 2)
    model = nn.Sequential(nn.Flatten(), layer)
    x = torch.rand(64, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
        logits = model(x)
        w = (layer.weight[1] - layer.weight[0]).expand(64, 16)  # f = z_1 - z_0 = w.x + b
        f = logits[:, 1] - logits[:, 0]
    distance = norms(boundary_projection(x.flatten(1), w, -f, norm), norm)  # (B,) exact minimum
    eps = float(distance.median())
    x_adv = fab(model, x, y, norm=norm, eps=eps, steps=20, targeted=False)
    with torch.no_grad():
        broken = model(x_adv).argmax(1) != y
    assert in_ball(norm, x_adv, x, eps)
    assert not broken[distance > eps].any(), "no adversarial point exists farther than eps"
    assert broken[distance < eps / 1.01].all(), "FAB converges to the minimal point"


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("targeted", [True, False], ids=["fab-t", "fab"])
def test_fab_stays_in_the_ball_breaks_examples_and_is_reproducible(norm: str, targeted: bool) -> None:
    x = batch(n=32)
    model = Recorder(mlp())
    y = own_labels(model.model, x)
    eps = EPS[norm]
    x_adv = fab(model, x, y, norm=norm, eps=eps, steps=10, restarts=2, targeted=targeted,
                n_target_classes=3, generator=torch.Generator().manual_seed(0))
    for seen in model.inputs:  # the box always; the ball is not FAB's constraint mid-run
        assert seen.min() >= 0 and seen.max() <= 1
    assert in_ball(norm, x_adv, x, eps)
    with torch.no_grad():
        clean, after = model.model(x).argmax(1) == y, model.model(x_adv).argmax(1) == y
    assert not (after & ~clean).any()
    assert int(after.sum()) < int(clean.sum())
    again = fab(model.model, x, y, norm=norm, eps=eps, steps=10, restarts=2, targeted=targeted,
                n_target_classes=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_adv, again)
    assert torch.equal(fab(model.model, x, y, norm=norm, eps=0.0), x)


def test_fab_restores_the_mode_and_leaves_parameters_alone() -> None:
    x = batch()
    model = Recorder(nn.Sequential(mlp(), nn.Dropout(0.5)))
    y = own_labels(model.model.eval(), x)
    model.train()
    fab(model, x, y, norm="linf", eps=0.1, steps=4, n_target_classes=2)
    assert model.training
    assert not any(model.modes)
    assert all(p.grad is None for p in model.parameters())


def test_fab_refuses_bad_arguments() -> None:
    x = batch(n=4)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="n_target_classes < the number of classes"):
        fab(mlp(num_outputs=4), x, y, norm="linf", eps=0.1, n_target_classes=4)
    with pytest.raises(ValueError, match="unknown norm"):
        fab(mlp(), x, y, norm="l1", eps=0.1)
