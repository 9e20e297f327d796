"""What every attack shares: how it holds the model, and the checks on its arguments.

An attack leaves the model as it found it (torchattacks' ``Attack.__call__``): it runs the
model in eval mode and restores the training mode afterwards, and it computes gradients with
respect to the input only. Parameters are frozen for the duration of the attack (their
``requires_grad`` flags are restored on exit), so the forward passes record no graph for
them and no parameter ever receives a ``.grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits (B, K), labels (B,)) -> per-example losses (B,)."""

BOX_TOLERANCE = 1e-6
"""How far outside [0, 1] an input may lie (rounding) before an attack refuses it."""


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and gradients enabled inside; the model restored after."""
    was_training = model.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
        model.train(was_training)


def check_inputs(x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
    """Refuse inputs outside [0, 1] (normalised images?), mismatched labels, negative eps."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    if x.numel() and (x.min() < -BOX_TOLERANCE or x.max() > 1 + BOX_TOLERANCE):
        raise ValueError(
            "inputs must be images in [0, 1] (normalisation belongs inside the model); "
            f"got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )


def per_example_loss(loss: LossFn, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``loss(logits, y)``, insisting on one value per example (a mean would couple examples)."""
    losses = loss(logits, y)
    if losses.shape != (logits.shape[0],):
        raise ValueError(
            f"the attack loss must return one value per example, shape ({logits.shape[0]},); "
            f"got {tuple(losses.shape)} (use reduction='none')"
        )
    return losses


def view_as_batch(per_example: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-example tensor (B,) shaped (B, 1, ..., 1) to broadcast against ``like`` (B, ...)."""
    return per_example.view(-1, *([1] * (like.dim() - 1)))


def lp_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """||delta_i|| per example (B,) in the threat model's norm ("linf" or "l2")."""
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall-clock seconds measure the attack, not the queue."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class ComponentOutcome:
    """One component of an ensemble: who is still standing after it, and what it cost."""

    name: str
    robust: torch.Tensor
    """(B,) bool: correct on the clean input and after this and every earlier component."""
    broke: torch.Tensor
    """(B,) bool: examples this component was the first to break."""
    seconds: float


@dataclass(frozen=True)
class AttackRun:
    """What one configured attack found on one batch: what ``evaluate`` needs from any attack.

    Every attack module has a ``run_spec(spec, model, x, y, generator) -> AttackRun`` that its
    spec class names (``contract.specs.attacks.AttackSpec.implementation``).
    """

    x_adv: torch.Tensor
    """(B, C, H, W): the adversarial inputs, in the ball and the box."""
    robust: torch.Tensor | None = None
    """(B,) bool where the attack judged correctness itself (an ensemble); None: ``evaluate``
    classifies ``x_adv``."""
    components: tuple[ComponentOutcome, ...] = ()
    """An ensemble's parts in the order they ran (AutoAttack), each with its own result row."""
