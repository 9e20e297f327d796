"""FAB, the fast adaptive boundary attack (Croce & Hein 2020, "Minimally distorted adversarial
examples with a fast adaptive boundary attack"; targeted as in their AutoAttack paper).

FAB looks for the smallest perturbation that changes the decision. Each iteration linearises
the decision boundary at the current point x_k (towards the target class for FAB-T; towards
the closest class for untargeted FAB), projects both x_k and the clean image x_0 onto that
hyperplane within the box [0, 1] (minimum l_inf or l_2 distance), and moves to a convex
combination of the two, extrapolated by ``eta``; the weight of x_0's projection (at most
``alpha_max``) grows the closer x_0 lies to the boundary. Once adversarial, the point is
pulled back towards x_0 by ``beta`` and the search continues, keeping the smallest adversarial
perturbation found.

The result at radius ``eps`` is that minimal point where its norm is at most ``eps``, else
``x``: a minimum-norm attack answers "is there one in the ball" only through its best point.
Cost per iteration: one forward+backward (targeted) or one forward and K backwards
(untargeted), plus one forward to test the new point.
"""

from __future__ import annotations

import torch
from torch import nn

from contract.specs.attacks import FABAttack
from workers.science.attacks.common import (
    AttackRun,
    attack_mode,
    check_inputs,
    lp_norms,
    view_as_batch,
)
from workers.science.attacks.dlr import ranked_targets
from workers.science.losses import correct
from workers.science.threat_models import THREAT_MODELS, TINY

NO_POINT = float("inf")
"""Norm recorded for an example for which no adversarial point has been found."""


def fab(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    steps: int = 100,
    targeted: bool = True,
    n_target_classes: int = 9,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""FAB-T (and FAB) in "Minimally distorted adversarial examples with a fast adaptive
    boundary attack" (Croce & Hein 2020), as AutoAttack runs it.

    Distance measure: Linf or L2, in pixel space, within the image box [0, 1].

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (B, K), K > n_target_classes
            when targeted.
        x (torch.Tensor): clean images (B, C, H, W) in [0, 1].
        y (torch.Tensor): (B,) true labels.
        norm (str): "linf" or "l2".
        eps (float): the radius at which success is judged: points farther are dropped.
        steps (int): iterations per run. (Default: 100)
        targeted (bool): FAB-T, towards each of the top ``n_target_classes`` other classes in
            turn; False is untargeted FAB (K backward passes per step). (Default: True)
        n_target_classes (int): targets of FAB-T. (Default: 9)
        restarts (int): runs per target (or in all); the first starts at ``x``, the others at
            random points of half the radius (reference code). (Default: 1)
        alpha_max (float): most weight of the clean image's projection. (Default: 0.1)
        eta (float): overshoot of the projections. (Default: 1.05)
        beta (float): pull towards ``x`` after an adversarial point. (Default: 0.9)
        generator (torch.Generator): source of the random starts. (Default: None)

    Shape:
        - x: (B, C, H, W) in [0, 1]; y: (B,); output: (B, C, H, W) in [0, 1], inside the ball.

    Restarts and targets run only on the examples not yet broken within ``eps``.

    Examples::
        >>> x_adv = fab(model, x, y, norm="linf", eps=0.3, steps=100)
    """
    check_inputs(x, y, eps)
    if norm not in THREAT_MODELS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(THREAT_MODELS)}")
    if steps < 0 or restarts < 1 or n_target_classes < 1:
        raise ValueError("need steps >= 0, restarts >= 1 and n_target_classes >= 1")
    x = x.detach()
    x_adv = x.clone()
    with attack_mode(model), torch.no_grad():
        clean_logits = model(x)  # (B, K)
    if clean_logits.dim() != 2 or clean_logits.shape[1] < 2:
        raise ValueError("FAB needs logits (B, K) with K >= 2 classes")
    if targeted and n_target_classes >= clean_logits.shape[1]:
        raise ValueError(f"FAB-T needs n_target_classes < the number of classes "
                         f"({clean_logits.shape[1]}), got {n_target_classes}")
    standing = correct(clean_logits, y)
    if eps == 0 or steps == 0:
        return x_adv
    ranks = list(range(2, n_target_classes + 2)) if targeted else [0]
    with attack_mode(model):
        for rank in ranks:
            for restart in range(restarts):
                index = standing.nonzero().flatten()
                if index.numel() == 0:
                    return x_adv
                target = ranked_targets(clean_logits[index], rank) if rank else None
                point, distance = _one_run(
                    model, x[index], y[index], target, norm, eps, steps, restart > 0,
                    alpha_max, eta, beta, generator)
                inside = distance <= eps
                x_adv[index[inside]] = point[inside]
                standing[index[inside]] = False
    return x_adv


def boundary_projection(
    x: torch.Tensor, w: torch.Tensor, c: torch.Tensor, norm: str
) -> torch.Tensor:
    """The smallest ``d`` (per example, l_inf or l_2) with ``w.d = c`` and ``x + d`` in [0, 1].

    Args:
        x: (B, D) points in [0, 1]; w: (B, D) hyperplane normals; c: (B,) offsets.

    Returns (B, D). For ``c >= 0`` (flip ``w`` otherwise) the cheapest move gives each
    coordinate i the sign of w_i and size min(t, r_i), where r_i is its room in the box;
    for l_inf, t is the norm and w.d = sum_i |w_i| min(t, r_i); for l_2 (KKT) d_i =
    w_i min(t, r_i / |w_i|) and w.d = sum_i w_i^2 min(t, r_i / |w_i|). Both are of the form
    g(t) = sum_i a_i min(t, b_i), nondecreasing and piecewise linear, so t comes from the sorted
    breakpoints and one linear solve. A hyperplane out of the box's reach gives its farthest
    point (t = max b_i).
    """
    sign = torch.where(c < 0, -1.0, 1.0).to(w.dtype).unsqueeze(1)  # (B, 1)
    w, c = w * sign, c.abs()
    room = torch.where(w > 0, 1 - x, x)  # (B, D) how far coordinate i can move along sign(w_i)
    magnitude = w.abs()
    if norm == "linf":
        weight, breaks = magnitude, room
    else:
        weight = magnitude.square()
        breaks = torch.where(magnitude > 0, room / magnitude.clamp_min(TINY), 0.0)
    t = _solve_piecewise(weight, breaks, c)  # (B,)
    reach = torch.minimum(t.unsqueeze(1), breaks)  # (B, D)
    return w.sign() * reach if norm == "linf" else w * reach


def _solve_piecewise(weight: torch.Tensor, breaks: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The smallest t >= 0 with sum_i weight_i min(t, breaks_i) >= c (B,), or max breaks."""
    b, order = breaks.sort(dim=1)  # (B, D)
    a = weight.gather(1, order)
    below = torch.cumsum(a * b, dim=1)  # sum over breakpoints passed (all of them at t = b_k)
    above = a.sum(dim=1, keepdim=True) - torch.cumsum(a, dim=1)  # weight still growing past b_k
    g = below + b * above  # (B, D): g(b_k)
    k = (g < c.unsqueeze(1)).sum(dim=1)  # first breakpoint where g reaches c
    reachable = k < b.shape[1]
    k = k.clamp(max=b.shape[1] - 1)
    prev_below = torch.where(k > 0, below.gather(1, (k - 1).clamp_min(0).unsqueeze(1)).squeeze(1), 0)
    prev_above = torch.where(k > 0, above.gather(1, (k - 1).clamp_min(0).unsqueeze(1)).squeeze(1),
                             a.sum(dim=1))
    t = (c - prev_below) / prev_above.clamp_min(TINY)
    t = torch.minimum(t.clamp_min(0), b.gather(1, k.unsqueeze(1)).squeeze(1))
    return torch.where(reachable, t, b[:, -1])


def _boundary(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit differences f_j = z_j - z_y (B, M) and their input gradients (B, M, D) at ``x``.

    Targeted: M = 1, j the target. Untargeted: M = K, the true class's row being zero (it is
    never the closest, its distance is made infinite by the caller).
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)  # (B, K)
    true = logits.gather(1, y.view(-1, 1))  # (B, 1)
    if target is not None:
        diff = logits.gather(1, target.view(-1, 1)) - true  # (B, 1)
        (grad,) = torch.autograd.grad(diff.sum(), x)
        return diff.detach(), grad.flatten(1).unsqueeze(1)
    diff = logits - true  # (B, K)
    grads = [torch.autograd.grad(diff[:, j].sum(), x, retain_graph=j + 1 < diff.shape[1])[0]
             for j in range(diff.shape[1])]
    return diff.detach(), torch.stack(grads, dim=1).flatten(2)


def _one_run(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    norm: str,
    eps: float,
    steps: int,
    random_start: bool,
    alpha_max: float,
    eta: float,
    beta: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB run: the smallest adversarial point found per example (B, C, H, W) and its norm
    (B,) (``NO_POINT`` where none was found; the point is then ``x0``)."""
    n, shape = x0.shape[0], x0.shape
    flat0 = x0.flatten(1)  # (B, D)
    best, best_norm = x0.clone(), torch.full((n,), NO_POINT, device=x0.device, dtype=x0.dtype)
    current = _random_start(x0, norm, eps, generator) if random_start else x0.clone()
    rows = torch.arange(n, device=x0.device)
    for _ in range(steps):
        diff, grads = _boundary(model, current, y, target)  # (B, M), (B, M, D)
        dual = grads.abs().sum(dim=2) if norm == "linf" else grads.norm(p=2, dim=2)
        distance = diff.abs() / (dual + TINY)  # (B, M) linearised distance to each boundary
        if target is None:
            distance[rows, y] = NO_POINT
        j = distance.argmin(dim=1)
        w = grads[rows, j]  # (B, D): the boundary is f_j(x) + w.(z - x) = 0
        f = diff[rows, j]
        flat = current.flatten(1)
        d_current = boundary_projection(flat, w, -f, norm)
        d_clean = boundary_projection(flat0, w, -f - (w * (flat0 - flat)).sum(dim=1), norm)
        a_current = lp_norms(d_current, norm).clamp_min(1e-8)
        a_clean = lp_norms(d_clean, norm).clamp_min(1e-8)
        alpha = (a_current / (a_current + a_clean)).clamp(0, alpha_max).unsqueeze(1)  # (B, 1)
        step = (flat + eta * d_current) * (1 - alpha) + (flat0 + eta * d_clean) * alpha
        current = step.clamp(0, 1).view(shape)
        with torch.no_grad():
            adversarial = ~correct(model(current), y)  # (B,)
        size = lp_norms(current - x0, norm)
        closer = adversarial & (size < best_norm)
        best[closer], best_norm[closer] = current[closer], size[closer]
        pulled = x0 + beta * (current - x0)
        current = torch.where(view_as_batch(adversarial, current), pulled, current)
    return best, best_norm


def _random_start(x0: torch.Tensor, norm: str, eps: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """A random point at half the radius from ``x0`` (the reference's restart), in the box."""
    if norm == "linf":
        t = 2 * torch.rand(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype) - 1
    else:
        t = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = t / view_as_batch(lp_norms(t, norm).clamp_min(TINY), t)
    return (x0 + 0.5 * eps * t).clamp(0, 1)


def run_spec(spec: FABAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> AttackRun:
    """``evaluation.attacks`` entry ``kind: fab`` (``contract.specs.attacks.FABAttack``)."""
    return AttackRun(fab(model, x, y, norm=spec.norm, eps=spec.eps, steps=spec.steps,
                         targeted=spec.targeted, n_target_classes=spec.n_target_classes,
                         restarts=spec.restarts, generator=generator))
