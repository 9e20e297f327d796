"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Algorithm 1): PGD without a step size to tune.

Each run starts from a random point of the ball with step size 2 * eps and takes momentum steps
(alpha = 0.75). At checkpoints w_j (after 22% of the budget, then at periods shrinking by 3% of
it down to 6%) the step of an example halves, and it restarts from its best point, when either
fewer than ``rho`` of the steps since the last checkpoint raised its loss, or its step was not
reduced at the last checkpoint and its best loss has not improved since. Per example the
attack keeps its highest-loss misclassified point, else its highest-loss point.

Variants only change the loss: ``loss="ce"`` (APGD-CE), ``loss="dlr"`` (APGD-DLR, the
difference of logits ratio), and ``targeted=True`` (APGD-T: targeted DLR towards each of the
``n_target_classes`` classes the clean logits rank highest after the prediction, one after the
other). Success is always misclassification. Restarts and targets run only on the examples
still standing (fra31/auto-attack ``perturb``), and only clean-correct examples are attacked.
Cost: ``(steps + 1) * eot_iter`` forward+backward passes per run and example attacked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from contract.specs.attacks import APGDAttack
from workers.science.attacks.common import (
    AttackRun,
    attack_mode,
    check_inputs,
    per_example_loss,
    view_as_batch,
)
from workers.science.attacks.dlr import dlr_loss, ranked_targets, targeted_dlr_loss
from workers.science.losses import classification_loss, correct
from workers.science.threat_models import THREAT_MODELS, ThreatModel, threat_model

APGD_LOSSES = ("ce", "dlr")
"""The untargeted losses of ``apgd``; targeted runs use the targeted DLR loss."""
MOMENTUM = 0.75
"""alpha of Algorithm 1: the weight of the new step against the previous one."""
INITIAL_STEP = 2.0
"""The step size starts at 2 * eps (Algorithm 1: eta^(0) = 2 eps)."""

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits (B, K), labels (B,)) -> per-example loss (B,) to maximise."""


def checkpoints(steps: int) -> list[int]:
    """The iterations after which the step size is reconsidered (w_j of Algorithm 1).

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), in whole iterations as
    the reference code rounds them: the first period is 22% of ``steps``, each next one 3% of
    ``steps`` shorter, never under 6%.
    """
    period = max(int(0.22 * steps), 1)
    decrement, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at = [], period
    while at <= steps:
        points.append(at)
        period = max(period - decrement, shortest)
        at += period
    return points


@dataclass
class _Run:
    """What one APGD run found per example: its worst misclassified point, else its best one."""

    x: torch.Tensor  # (B, C, H, W)
    success: torch.Tensor  # (B,) bool


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    steps: int = 100,
    loss: str = "ce",
    restarts: int = 1,
    targeted: bool = False,
    n_target_classes: int = 9,
    rho: float = 0.75,
    eot_iter: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""APGD in the paper "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks" (Croce & Hein 2020). APGD-CE, APGD-DLR and APGD-T.

    Distance measure: Linf or L2, in pixel space, within the image box [0, 1].

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (B, K) (K >= 3 for DLR, K >= 4 and
            K > n_target_classes for APGD-T; cross-entropy also takes a binary logit (B, 1)).
        x (torch.Tensor): clean images (B, C, H, W) in [0, 1].
        y (torch.Tensor): (B,) true labels.
        norm (str): "linf" or "l2" (a key of ``THREAT_MODELS``).
        eps (float): radius of the ball. eps 0 returns ``x`` unchanged.
        steps (int): iterations per run. (Default: 100)
        loss (str): "ce" or "dlr", the untargeted loss. (Default: "ce")
        restarts (int): runs per target (or in all, untargeted) on the examples still
            standing, each from a new random start. (Default: 1)
        targeted (bool): APGD-T: targeted DLR towards each of the top ``n_target_classes``
            other classes in turn; ``loss`` is then ignored. (Default: False)
        n_target_classes (int): targets of APGD-T. (Default: 9)
        rho (float): a checkpoint halves the step unless more than this fraction of the
            steps since the last one raised the loss. (Default: 0.75)
        eot_iter (int): gradients averaged per step (expectation over transformation, for
            randomised models). (Default: 1)
        generator (torch.Generator): source of the random starts, on ``x``'s device.
            (Default: None, torch's global generator)

    Shape:
        - x: (B, C, H, W) in [0, 1]; y: (B,); output: (B, C, H, W) in [0, 1], inside the ball.

    Per example the output is the highest-loss misclassified point of the first run that found
    one, else the point of highest loss of the first run (``x`` for examples misclassified already). The model's mode
    is restored and its parameters get no gradient.

    Examples::
        >>> x_adv = apgd(model, x, y, norm="linf", eps=0.3, steps=100, targeted=True)
    """
    check_inputs(x, y, eps)
    _check_arguments(norm, steps, loss, restarts, n_target_classes, rho, eot_iter)
    x = x.detach()
    x_adv = x.clone()
    with attack_mode(model), torch.no_grad():
        clean_logits = model(x)
    standing = correct(clean_logits, y)  # (B,) not yet misclassified
    if eps == 0 or steps == 0:
        return x_adv
    first = torch.ones_like(standing)  # (B,) no run has touched it yet
    runs = _objectives(clean_logits, loss, targeted, n_target_classes, restarts)
    with attack_mode(model):
        for objective in runs:
            index = standing.nonzero().flatten()
            if index.numel() == 0:
                break
            ball = threat_model(norm, x[index], eps, 1.0)
            run = _one_run(model, ball, y[index], objective(index), steps, rho, eot_iter,
                           generator)
            keep = run.success | first[index]
            x_adv[index[keep]] = run.x[keep]
            first[index] = False
            standing[index[run.success]] = False
    return x_adv


def _check_arguments(norm: str, steps: int, loss: str, restarts: int, n_target_classes: int,
                     rho: float, eot_iter: int) -> None:
    if norm not in THREAT_MODELS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(THREAT_MODELS)}")
    if steps < 0 or restarts < 1 or n_target_classes < 1 or eot_iter < 1:
        raise ValueError("need steps >= 0, restarts >= 1, n_target_classes >= 1 and "
                         f"eot_iter >= 1; got {steps}, {restarts}, {n_target_classes}, {eot_iter}")
    if loss not in APGD_LOSSES:
        raise ValueError(f"unknown APGD loss {loss!r}; known: {', '.join(APGD_LOSSES)}")
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho}")


def _objectives(
    clean_logits: torch.Tensor, loss: str, targeted: bool, n_target_classes: int, restarts: int
) -> list[Callable[[torch.Tensor], Objective]]:
    """One entry per run, in order: given the examples it attacks, the loss it maximises."""
    classes = clean_logits.shape[1] if clean_logits.dim() == 2 else 1
    if not targeted:
        if loss == "dlr" and classes < 3:
            raise ValueError(f"the DLR loss needs logits (B, K) with K >= 3 classes, got {classes}")
        base: Objective = classification_loss if loss == "ce" else dlr_loss
        return [lambda _index: base] * restarts
    if n_target_classes >= classes:
        raise ValueError(f"APGD-T needs n_target_classes < the number of classes ({classes}), "
                         f"got {n_target_classes}")

    def towards(rank: int) -> Callable[[torch.Tensor], Objective]:
        def objective_for(index: torch.Tensor) -> Objective:
            target = ranked_targets(clean_logits[index], rank)  # (b,)
            return lambda logits, labels: targeted_dlr_loss(logits, labels, target)
        return objective_for

    return [towards(rank) for rank in range(2, n_target_classes + 2) for _ in range(restarts)]


def _loss_and_grad(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: Objective, eot_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean loss (B,), mean input gradient (B, C, H, W) over ``eot_iter`` draws, and whether
    the last draw misclassifies (B,) bool."""
    x = x.detach().requires_grad_(True)
    total_loss = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    total_grad = torch.zeros_like(x)
    for _ in range(eot_iter):
        logits = model(x)  # (B, K)
        losses = per_example_loss(objective, logits, y)  # (B,)
        (grad,) = torch.autograd.grad(losses.sum(), x)
        total_loss += losses.detach()
        total_grad += grad
    return total_loss / eot_iter, total_grad / eot_iter, ~correct(logits.detach(), y)


def _one_run(
    model: nn.Module,
    ball: ThreatModel,
    y: torch.Tensor,
    objective: Objective,
    steps: int,
    rho: float,
    eot_iter: int,
    generator: torch.Generator | None,
) -> _Run:
    """Algorithm 1 on the examples of ``ball`` (built with step size 1: ``ball.step`` from 0
    is then the unit steepest-ascent direction, scaled here per example)."""
    x_adv = ball.random_perturb(ball.x0, generator)  # (B, C, H, W)
    step = view_as_batch(torch.full((x_adv.shape[0],), INITIAL_STEP * ball.eps,
                                    device=x_adv.device, dtype=x_adv.dtype), x_adv)
    loss, grad, broke = _loss_and_grad(model, x_adv, y, objective, eot_iter)
    found, success = x_adv.clone(), broke.clone()
    found_loss = torch.where(broke, loss, -torch.inf)  # (B,) the loss at ``found``
    best_x, best_loss, best_grad = x_adv.clone(), loss.clone(), grad.clone()
    previous_x, previous_loss = x_adv.clone(), loss.clone()
    rises = torch.zeros_like(loss)  # (B,) steps since the last checkpoint that raised the loss
    best_at_check, reduced_at_check = best_loss.clone(), torch.ones_like(success)
    marks, since = set(checkpoints(steps)), 0
    for iteration in range(steps):
        momentum = x_adv - previous_x
        previous_x = x_adv
        z = ball.project(x_adv + step * ball.step(torch.zeros_like(grad), grad))
        if iteration > 0:
            z = ball.project(x_adv + MOMENTUM * (z - x_adv) + (1 - MOMENTUM) * momentum)
        x_adv = z
        loss, grad, broke = _loss_and_grad(model, x_adv, y, objective, eot_iter)
        worse = broke & (loss > found_loss)  # misclassified, and the worst such point yet
        found[worse], found_loss[worse], success = x_adv[worse], loss[worse], success | broke
        improved = loss > best_loss
        best_x[improved], best_grad[improved], best_loss[improved] = (
            x_adv[improved], grad[improved], loss[improved])
        rises += (loss > previous_loss).to(rises.dtype)
        previous_loss, since = loss, since + 1
        if iteration + 1 in marks:
            oscillating = rises <= rho * since
            stalled = ~reduced_at_check & (best_at_check >= best_loss)
            halve = oscillating | stalled
            step[halve] /= 2
            x_adv, grad = x_adv.clone(), grad.clone()
            x_adv[halve], grad[halve] = best_x[halve], best_grad[halve]
            reduced_at_check, best_at_check = halve, best_loss.clone()
            rises.zero_()
            since = 0
    return _Run(x=torch.where(view_as_batch(success, found), found, best_x), success=success)


def run_spec(spec: APGDAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> AttackRun:
    """``evaluation.attacks`` entry ``kind: apgd`` (``contract.specs.attacks.APGDAttack``)."""
    return AttackRun(apgd(model, x, y, norm=spec.norm, eps=spec.eps, steps=spec.steps,
                          loss=spec.loss, restarts=spec.restarts, targeted=spec.targeted,
                          n_target_classes=spec.n_target_classes, eot_iter=spec.eot_iter,
                          generator=generator))
