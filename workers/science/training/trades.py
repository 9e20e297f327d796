"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui and Jordan 2019, "Theoretically Principled
Trade-off between Robustness and Accuracy").

Loss per example: ``CE(f(x), y) + beta * KL(f(x) || f(x'))``, where ``x'`` maximises the KL
inside the training ball, found by PGD from ``x + 0.001 * N(0, 1)`` with ``steps`` steps of
``step_size``. ``beta`` moves the model along the trade-off: 0 is standard training, larger
values buy robustness with standard accuracy. Both terms carry gradients to the parameters
through f(x) and f(x'), as in the reference implementation (yaodongyu/TRADES ``trades.py``).

Cost per batch: one forward of the clean batch (kept, with its graph, for the loss: its
softmax is also the attack's target, so there is no extra forward for it), ``steps`` forward +
input-gradient passes, one forward of x' and the backward through both forwards. The clean
forward also gives the epoch's clean accuracy.

A model with one logit (the -1/+1 convention) is treated as the two-class model with logits
(0, f(x)): its softmax is the logistic model's Bernoulli distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workers.science.attacks.common import attack_mode
from workers.science.losses import classification_loss, correct, is_binary
from workers.science.threat_models import threat_model
from workers.science.training.common import (
    BatchLoss,
    BatchSetup,
    ModeLocked,
    attacker,
    buffers_preserved,
)

START_NOISE = 0.001
"""Standard deviation of the Gaussian start of the inner maximisation (Zhang et al.)."""


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """log softmax in float32 (B, K); one logit f becomes the two logits (0, f)."""
    logits = logits.float()
    if is_binary(logits):
        f = logits.reshape(-1, 1)
        logits = torch.cat([torch.zeros_like(f), f], dim=1)  # (B, 2)
    return F.log_softmax(logits, dim=1)


def kl_to(log_p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per example (B,), for log-probabilities ``log_p`` and the logits of q."""
    return (log_p.exp() * (log_p - log_probabilities(logits))).sum(dim=1)


def trades_examples(model: nn.Module, x: torch.Tensor, clean_log_p: torch.Tensor,
                    setup: BatchSetup, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The inner maximisation: x' in the ball around ``x`` with KL(p_clean || f(x')) high.

    Args:
        clean_log_p: (B, K) log-probabilities of the clean batch, detached (the target).
        generator: source of the Gaussian start (default: torch's global generator).

    Runs in the model's current mode (``ModeLocked``) with frozen parameters and its running
    statistics restored afterwards; returns x' detached, inside the ball and in [0, 1].
    """
    ball = threat_model(setup.adversary.norm, x, setup.eps, setup.step_size)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_adv = ball.project(x.detach() + START_NOISE * noise)
    locked = ModeLocked(model)
    with buffers_preserved(model), attack_mode(locked), setup.autocast():
        for _ in range(setup.adversary.steps):
            x_adv.requires_grad_(True)
            kl = kl_to(clean_log_p, locked(x_adv)) * setup.attack_loss_scale  # (B,)
            (grad,) = torch.autograd.grad(kl.sum(), x_adv)
            x_adv = ball.project(ball.step(x_adv.detach(), grad))
    return x_adv.detach()


def trades_training(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    setup: BatchSetup) -> BatchLoss:
    """One batch of TRADES: CE on the clean batch plus beta times the KL at x'."""
    with setup.autocast():
        clean_logits = model(x)  # (B, K), graph kept for the loss
    clean_log_p = log_probabilities(clean_logits)
    x_adv = trades_examples(attacker(model, setup), x, clean_log_p.detach(), setup)
    with setup.autocast():
        adv_logits = model(x_adv)  # (B, K)
    ce = classification_loss(clean_logits.float(), y, reduction="none")  # (B,)
    losses = ce + setup.adversary.beta * kl_to(clean_log_p, adv_logits)  # (B,)
    return BatchLoss(loss=losses.mean(), losses=losses.detach(),
                     clean_hits=correct(clean_logits.detach(), y),
                     adv_hits=correct(adv_logits.detach(), y))
