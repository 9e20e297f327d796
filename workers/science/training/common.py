"""What every training method shares: the batch it returns, the model as its adversary sees it.

A training method turns one batch ``(x, y)`` into a ``BatchLoss``: the loss to minimise (with
its graph) and the per-example numbers the epoch metrics need, taken from the forward passes
the method makes anyway, so no pass is spent only on a metric. The loop
(``workers.science.training.loop``) does the backward pass and the optimiser step.

Choice of the model's mode during the attack: the inner maximisation sees the model in
*training* mode, as in Madry et al.'s own code (cifar10_challenge builds one graph with
batch-norm in train mode and attacks it), so the adversary attacks the very function whose loss
is minimised (batch statistics, not running averages). The attack's forward passes leave the
running statistics untouched (they are restored afterwards); only the training forwards update
them. MadryLab's ``robustness`` library and the TRADES reference code attack in eval mode
instead; for the models without batch-norm (``linear``, ``mnist_cnn``) both choices are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from contract.specs.training import AdversaryConfig
from workers.science.losses import classification_loss, correct


@dataclass(frozen=True)
class BatchLoss:
    """A training method's outcome on one batch (all tensors on the training device)."""

    loss: torch.Tensor
    """() the mean loss to minimise, graph attached."""
    losses: torch.Tensor
    """(B,) per-example losses, detached: the epoch's loss metric."""
    clean_hits: torch.Tensor | None
    """(B,) bool from a forward on the clean batch, when the method made one."""
    adv_hits: torch.Tensor | None
    """(B,) bool from the forward on the adversarial batch, when the method made one."""


@dataclass(frozen=True)
class BatchSetup:
    """What a method needs besides the model and the batch, fixed for one epoch."""

    adversary: AdversaryConfig
    eps: float
    """This epoch's radius (after the ramp); > 0 whenever a method is called."""
    step_size: float
    """This epoch's attack step size (``epoch_step_size``)."""
    autocast: Callable[[], AbstractContextManager[object]]
    """Mixed-precision context of every forward pass (a no-op with ``amp: off``)."""
    attack_loss_scale: float = 1.0
    """Factor on the attack's loss before its input gradient (fp16: keeps tiny gradients from
    flushing to zero; the sign and the l_2 direction do not depend on it)."""
    attack_model: nn.Module | None = None
    """What the inner maximisation runs through when it differs from the trained model: in a
    distributed run, the unwrapped module with rank-local BatchNorm (no DDP gradient hooks, no
    collective call inside an attack step). ``attacker(model, setup)`` picks it."""


def attacker(model: nn.Module, setup: BatchSetup) -> nn.Module:
    """The module a method's attack goes through: ``setup.attack_model`` or ``model`` itself."""
    return setup.attack_model if setup.attack_model is not None else model


TrainingMethod = Callable[[nn.Module, torch.Tensor, torch.Tensor, BatchSetup], BatchLoss]
"""``(model, x (B, C, H, W), y (B,), setup) -> BatchLoss``: one registered training method."""


def epoch_eps(adversary: AdversaryConfig, epoch: int) -> float:
    """The training radius in epoch ``epoch`` (counting from 0): eps ramp-up.

    With ``ramp_epochs`` R > 0, eps grows linearly from 0: epoch e uses eps * e / R until it
    reaches eps at epoch R (so the first epoch is standard training). R = 0: eps throughout.
    """
    if adversary.ramp_epochs == 0:
        return adversary.eps
    return adversary.eps * min(1.0, epoch / adversary.ramp_epochs)


def epoch_step_size(adversary: AdversaryConfig, eps: float) -> float:
    """The attack step size at radius ``eps`` > 0: the configured one, scaled with eps in ramp-up.

    Keeping step_size / eps fixed keeps the attack's geometry (2.5 * eps / steps, or 1.25 * eps
    for fgsm_rs, by default) at every radius of the ramp.
    """
    return adversary.resolved_step_size * eps / adversary.eps


class ModeLocked(nn.Module):
    """The model as the training adversary sees it: in its current mode, whatever an attack asks.

    Attacks switch their model to eval mode (``attacks.common.attack_mode``); wrapping makes
    that a no-op, so the attack runs in training mode (see the module docstring).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def train(self, mode: bool = True) -> ModeLocked:
        return self


@contextmanager
def buffers_preserved(model: nn.Module) -> Iterator[None]:
    """Let the block update copies of the buffers (batch-norm running statistics), not them.

    Each module's buffers are swapped for clones during the block and the original tensors put
    back after, untouched. Copying saved values back in place instead would bump the buffers'
    version counters and break the backward pass of a forward made before the block (TRADES
    keeps its clean forward's graph across the attack; batch-norm saves its running statistics
    for backward).
    """
    swapped: list[tuple[nn.Module, str, torch.Tensor]] = []
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None:
                swapped.append((module, name, buffer))
                module._buffers[name] = buffer.clone()
    try:
        yield
    finally:
        for module, name, buffer in swapped:
            module._buffers[name] = buffer


def supervised_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    setup: BatchSetup) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward ``x`` under the precision context: (per-example losses (B,), hits (B,) bool).

    The loss is computed in float32 whatever the autocast dtype (cross-entropy of fp16 logits
    loses digits that the mean over a batch then needs).
    """
    with setup.autocast():
        logits = model(x)  # (B, K)
    losses = classification_loss(logits.float(), y, reduction="none")  # (B,)
    return losses, correct(logits.detach(), y)


def standard(model: nn.Module, x: torch.Tensor, y: torch.Tensor, setup: BatchSetup) -> BatchLoss:
    """Standard training (eps 0, for every method): the cross-entropy of the clean batch."""
    losses, hits = supervised_loss(model, x, y, setup)
    return BatchLoss(loss=losses.mean(), losses=losses.detach(), clean_hits=hits, adv_hits=None)
