"""Projected gradient descent: one generic loop over any threat model in ``THREAT_MODELS``.

The loop only calls the threat model's ``random_perturb``, ``step`` and ``project``; the norm is
a name, not a copy of the loop. By default it returns, per example, the worst point it saw across
all iterates and restarts (best-iterate tracking), and it costs ``steps`` forward+backward
passes per restart plus one forward for the last iterate: the logits of the forward that
produced a gradient also score the point they were computed at. ``best_iterate=False`` returns
the last iterate, as Madry et al.'s training does, and costs exactly ``steps`` forward+backward
passes with one restart: adversarial training uses it, because its own forward scores the
examples anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from contract.specs.attacks import PGDAttack
from workers.science.attacks.common import (
    AttackRun,
    LossFn,
    attack_mode,
    check_inputs,
    per_example_loss,
)
from workers.science.losses import classification_loss, correct
from workers.science.threat_models import ThreatModel, threat_model


@dataclass
class _Worst:
    """The worst point found so far for each example, and how bad it is.

    ``success``: misclassified (untargeted) or classified as the target (targeted).
    ``score``: the loss (untargeted) or minus the loss towards the target (targeted), so that
    higher is always worse for the model. A success beats any failure; among equals, the
    higher score wins.
    """

    x: torch.Tensor  # (B, C, H, W)
    score: torch.Tensor  # (B,)
    success: torch.Tensor  # (B,) bool

    @classmethod
    def start(cls, x: torch.Tensor) -> _Worst:
        n = x.shape[0]
        return cls(
            x=x.detach().clone(),
            score=torch.full((n,), -torch.inf, device=x.device, dtype=x.dtype),
            success=torch.zeros(n, dtype=torch.bool, device=x.device),
        )

    def update(self, x: torch.Tensor, score: torch.Tensor, success: torch.Tensor) -> None:
        """Keep ``x`` where it is worse for the model than the current point."""
        better = (success & ~self.success) | ((success == self.success) & (score > self.score))
        self.x = torch.where(better.view(-1, *([1] * (x.dim() - 1))), x, self.x)
        self.score = torch.where(better, score, self.score)
        self.success = self.success | success

    def merge(self, index: torch.Tensor, other: _Worst) -> None:
        """Fold in the outcome ``other`` of a restart run on the examples ``index``."""
        part = _Worst(self.x[index], self.score[index], self.success[index])
        part.update(other.x, other.score, other.success)
        self.x[index], self.score[index], self.success[index] = part.x, part.score, part.success


@dataclass(frozen=True)
class _Objective:
    """Turns logits into (score, success) and tells the ascent direction."""

    loss: LossFn
    targeted: bool

    def score(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = per_example_loss(self.loss, logits, y)  # (B,)
        return -losses if self.targeted else losses

    def evaluate(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hits = correct(logits, y)  # (B,)
        return self.score(logits, y), hits if self.targeted else ~hits


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    restarts: int = 1,
    targeted: bool = False,
    loss: LossFn | None = None,
    early_stop: bool = False,
    generator: torch.Generator | None = None,
    best_iterate: bool = True,
) -> torch.Tensor:
    r"""PGD in the paper "Towards Deep Learning Models Resistant to Adversarial Attacks"
    (Madry et al. 2018), as used by Tsipras et al. ("Robustness may be at odds with accuracy").

    Distance measure: Linf or L2, in pixel space, within the image box [0, 1].

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (B, K) or a binary logit (B, 1).
        x (torch.Tensor): clean images (B, C, H, W) in [0, 1].
        y (torch.Tensor): (B,) labels (class indices, or -1/+1 for one logit); the target
            classes when ``targeted``.
        norm (str): "linf" or "l2" (a key of ``THREAT_MODELS``).
        eps (float): radius of the ball. eps 0 returns ``x`` unchanged.
        step_size (float): length of one step in that norm.
        steps (int): number of gradient steps per restart.
        random_start (bool): start from a uniform point of the ball. (Default: True)
        restarts (int): independent runs; per example the worst one is kept. (Default: 1)
        targeted (bool): move towards ``y`` (minimise its loss) instead of away. (Default: False)
        loss (callable): ``loss(logits, y) -> (B,)`` per-example loss.
            (Default: ``classification_loss``, cross-entropy or logistic)
        early_stop (bool): stop once every example is misclassified (hits its target), and run
            later restarts only on the examples not yet broken; for evaluation. (Default: False)
        generator (torch.Generator): source of the random starts, on ``x``'s device.
            (Default: None, torch's global generator)
        best_iterate (bool): return each example's worst iterate; ``False`` returns the last
            one (of the worst restart), saving one forward per restart. (Default: True)

    Shape:
        - x: (B, C, H, W) in [0, 1]; y: (B,); output: (B, C, H, W) in [0, 1], inside the ball.

    Per example the returned point is the worst iterate of all restarts: a misclassified
    (resp. on-target) iterate beats any other, then the highest loss (resp. lowest). The model's
    mode is restored and its parameters get no gradient.

    Examples::
        >>> x_adv = pgd(model, x, y, norm="linf", eps=8 / 255, step_size=2 / 255, steps=10)
    """
    check_inputs(x, y, eps)
    if steps < 0 or restarts < 1:
        raise ValueError(f"need steps >= 0 and restarts >= 1, got {steps} and {restarts}")
    if early_stop and not best_iterate:
        raise ValueError("early_stop needs best_iterate: a stopped run returns its worst iterate")
    x = x.detach()
    objective = _Objective(loss or classification_loss, targeted)
    worst = _Worst.start(x)
    with attack_mode(model):
        for restart in range(restarts):
            index = _examples_to_attack(worst, restart, early_stop)
            if index.numel() == 0:
                break
            ball = threat_model(norm, x[index], eps, step_size)
            start = ball.random_perturb(ball.x0, generator) if random_start else ball.x0.clone()
            if not best_iterate and restarts == 1:  # nothing to compare: skip the scoring
                return _one_run(model, ball, start, y[index], steps, objective, early_stop,
                                track=False, score_last=False).x
            outcome = _one_run(model, ball, start, y[index], steps, objective, early_stop,
                               track=best_iterate)
            worst.merge(index, outcome)
    return worst.x


def _examples_to_attack(worst: _Worst, restart: int, early_stop: bool) -> torch.Tensor:
    """All examples, or with ``early_stop`` after the first restart only the unbroken ones."""
    if early_stop and restart > 0:
        return (~worst.success).nonzero().flatten()
    return torch.arange(worst.success.shape[0], device=worst.success.device)


def _one_run(
    model: nn.Module,
    ball: ThreatModel,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    objective: _Objective,
    early_stop: bool,
    *,
    track: bool = True,
    score_last: bool = True,
) -> _Worst:
    """One PGD run from ``x_adv``: ``steps`` gradient steps, tracking the worst iterate.

    Each forward that gives a gradient also scores its own point, so the iterates x_0 ..
    x_{steps-1} cost no extra pass; the last iterate gets one gradient-free forward. The
    ascent is on the score (minus the loss when targeted), so one step rule serves both.
    Without ``track`` only the last iterate counts; without ``score_last`` it is returned
    unscored (Madry et al.'s loop: nothing to compare it with when there is one restart).
    """
    worst = _Worst.start(x_adv)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)  # (B, K)
        score, success = objective.evaluate(logits, y)  # (B,), (B,)
        (grad,) = torch.autograd.grad(score.sum(), x_adv)  # (B, C, H, W)
        x_adv = x_adv.detach()
        if track:
            worst.update(x_adv, score.detach(), success)
            if early_stop and bool(worst.success.all()):
                return worst
        x_adv = ball.project(ball.step(x_adv, grad))
    if not score_last:
        worst.x = x_adv
        return worst
    with torch.no_grad():
        score, success = objective.evaluate(model(x_adv), y)
    worst.update(x_adv, score, success)
    return worst


def run_spec(spec: PGDAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> AttackRun:
    """``evaluation.attacks`` entry ``kind: pgd`` (``contract.specs.attacks.PGDAttack``)."""
    return AttackRun(pgd(model, x, y, norm=spec.norm, eps=spec.eps,
                         step_size=spec.resolved_step_size, steps=spec.steps,
                         random_start=spec.random_start, restarts=spec.restarts,
                         early_stop=True, generator=generator))
