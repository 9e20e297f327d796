"""The exact worst case of a linear classifier f(x) = w.x + b with -1/+1 labels, in closed form.

For a linear model the inner maximisation of adversarial training has a solution, so PGD can
be checked against it (and E1/E3 need no iterative attack at all). The adversary minimises
the margin y * f(x + delta) over the ball, inside the image box [0, 1]:

- l_inf: the problem separates per pixel. Each pixel moves by eps against y * sign(w_i),
  clipped to [0, 1]; that is optimal pixel by pixel, hence exact.
- l_2: maximise c . delta with c = -y w over ||delta||_2 <= eps and x + delta in [0, 1]. The
  KKT conditions give delta_i = clip(t c_i, -x_i, 1 - x_i) for the one t >= 0 with
  ||delta||_2 = eps (or the box corner itself when it lies in the ball). ||delta(t)||
  is piecewise of the form sqrt(B + t^2 C) between the points where coordinates saturate, so t is
  found exactly by sorting those points. Without the box this is x - eps y w / ||w||_2.

Everything is computed in float64 and returned in the input's dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from contract.specs.attacks import ExactLinearAttack
from workers.science.attacks.common import AttackRun, attack_mode, check_inputs
from workers.science.losses import is_binary

AFFINE_TOLERANCE = 1e-4
"""Relative error up to which a model's outputs must match w.x + b to count as linear."""


class LinearWorstCase(NamedTuple):
    """The adversarial inputs (B, C, H, W) and their worst-case margins y f(x_adv), (B,)."""

    x_adv: torch.Tensor
    margin: torch.Tensor


def affine_parameters(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w (D,), b ()) of a model that is affine in its input, read off by autograd, in float64.

    Works for any affine model (a bare ``nn.Linear`` or one behind a normalisation layer): b is
    f(0) and w the gradient of f. ``x`` (B, C, H, W) supplies the input shape and a test: a
    model whose outputs on ``x`` differ from w.x + b is not linear, and is refused.
    """
    with attack_mode(model):
        zero = torch.zeros_like(x[:1], requires_grad=True)  # (1, C, H, W)
        out = model(zero)
        if not is_binary(out):
            raise ValueError(
                f"the exact linear attack needs one output (a -1/+1 task), got {tuple(out.shape)}"
            )
        (grad,) = torch.autograd.grad(out.sum(), zero)
        with torch.no_grad():
            observed = model(x).reshape(-1).double()  # (B,)
    w, b = grad.flatten().double(), out.detach().reshape(()).double()
    predicted = x.flatten(1).double() @ w + b  # (B,)
    scale = 1.0 + predicted.abs().max()
    if (observed - predicted).abs().max() > AFFINE_TOLERANCE * scale:
        raise ValueError("the exact linear attack needs a linear model; this one is not affine")
    return w, b


def linf_worst_case(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float
) -> LinearWorstCase:
    """Exact l_inf worst case inside [0, 1]: each pixel moves eps against y * sign(w_i)."""
    flat = x.flatten(1).double()  # (B, D)
    direction = -y.double().view(-1, 1) * torch.sign(w).view(1, -1)  # (B, D)
    adv = (flat + eps * direction).clamp(0, 1)
    return _result(w, b, adv, y, x)


def l2_worst_case(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float
) -> LinearWorstCase:
    """Exact l_2 worst case inside [0, 1] (see the module docstring for the derivation)."""
    flat = x.flatten(1).double()  # (B, D)
    c = -y.double().view(-1, 1) * w.view(1, -1)  # (B, D) ascent direction of -margin
    room = torch.where(c > 0, 1 - flat, flat)  # (B, D) how far each pixel can move along c
    t = _l2_multiplier(c.abs(), room, eps)  # (B, 1)
    delta = torch.maximum(torch.minimum(t * c, 1 - flat), -flat)  # clip(t c, -x, 1 - x)
    return _result(w, b, flat + delta, y, x)


def _l2_multiplier(a: torch.Tensor, room: torch.Tensor, eps: float) -> torch.Tensor:
    """The t >= 0 with sum_i min(t a_i, room_i)^2 = eps^2 per row, shape (B, 1).

    When even the box corner (every coordinate saturated) lies inside the ball, t is the last
    saturation point, where that corner is reached.

    Coordinate i saturates at t_i = room_i / a_i (0 when a_i = 0: it never moves). Sorted by
    t_i, with the first k coordinates saturated the squared norm is B_k + t^2 C_k, where B_k
    sums their room^2 and C_k the remaining a^2; t lies on the first segment whose end point
    reaches eps^2.
    """
    moving = a > 0
    knots = torch.where(moving, room / a.clamp_min(1e-300), torch.zeros_like(a))  # (B, D)
    order = knots.argsort(dim=1)
    knots, a, room = knots.gather(1, order), a.gather(1, order), room.gather(1, order)
    room = torch.where(knots > 0, room, torch.zeros_like(room))
    saturated = torch.cumsum(room**2, dim=1)  # B_k with the first k (1-based) saturated
    free = (a**2).flip(1).cumsum(1).flip(1) - a**2  # C_k: a^2 of coordinates after k
    at_knots = saturated + knots**2 * free  # squared norm at each knot
    k = (at_knots < eps**2).sum(dim=1, keepdim=True)  # knots passed before reaching eps
    all_saturated = k == a.shape[1]
    k_prev = (k - 1).clamp(min=0, max=a.shape[1] - 1)
    b_prev = torch.where(k > 0, saturated.gather(1, k_prev), torch.zeros_like(k, dtype=a.dtype))
    c_prev = torch.where(k > 0, free.gather(1, k_prev), (a**2).sum(1, keepdim=True))
    t = torch.sqrt((eps**2 - b_prev).clamp_min(0) / c_prev.clamp_min(1e-300))
    return torch.where(all_saturated, knots[:, -1:], t)


def _result(
    w: torch.Tensor, b: torch.Tensor, adv: torch.Tensor, y: torch.Tensor, like: torch.Tensor
) -> LinearWorstCase:
    margin = y.double() * (adv @ w + b)  # (B,)
    return LinearWorstCase(adv.to(like.dtype).view_as(like), margin)


WORST_CASES = {"linf": linf_worst_case, "l2": l2_worst_case}


def exact_linear_attack(
    model_or_wb: nn.Module | tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
) -> LinearWorstCase:
    r"""The exact worst case of a linear binary classifier (Tsipras et al., Sec. 2 and App. C).

    Distance measure: Linf or L2, in pixel space, within the image box [0, 1].

    Arguments:
        model_or_wb: a model affine in its input with one output (e.g. ``linear``), or the pair
            ``(w (D,), b ())`` of f(x) = w.x + b over the flattened input.
        x (torch.Tensor): clean inputs (B, C, H, W) (any (B, ...)) in [0, 1].
        y (torch.Tensor): (B,) labels in {-1, +1}.
        norm (str): "linf" or "l2".
        eps (float): radius of the ball.

    Returns:
        ``LinearWorstCase(x_adv, margin)``: the minimiser of y f(x + delta) over the ball and
        box, and that minimum y f(x_adv) (float64). The example is robust iff margin > 0.

    Examples::
        >>> x_adv, margin = exact_linear_attack(model, x, y, norm="linf", eps=0.2)
    """
    check_inputs(x, y, eps)
    if norm not in WORST_CASES:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(WORST_CASES)}")
    if isinstance(model_or_wb, nn.Module):
        w, b = affine_parameters(model_or_wb, x.detach())
    else:
        w, b = (t.detach().double().to(x.device) for t in model_or_wb)
        w, b = w.flatten(), b.reshape(())
    return WORST_CASES[norm](w, b, x.detach(), y, eps)


def run_spec(spec: ExactLinearAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> AttackRun:
    """``evaluation.attacks`` entry ``kind: exact_linear`` (``contract.specs.attacks.ExactLinearAttack``)."""
    return AttackRun(exact_linear_attack(model, x, y, norm=spec.norm, eps=spec.eps).x_adv)
