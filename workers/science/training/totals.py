"""An epoch's training metrics: summed on the device, read back to the host only at syncs.

The loop (``loop._train_epoch``) adds every batch's loss and hits here without waiting for the
device; ``sync`` reads them back once every ``METRIC_SYNC_EVERY`` batches and at the end of the
epoch, and a loss that became NaN or infinite is noted by its step on the device and raised at
the next sync (``check_finite``), so no batch waits for the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from contract.errors import Refusal
from workers.science.distributed import World, all_reduce_sum
from workers.science.training.common import BatchLoss
from workers.science.training.precision import Precision

METRIC_SYNC_EVERY = 50
"""Batches between reads of the metric accumulators (one host-device sync each)."""


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch of training measured, on the training examples it saw."""

    epoch: int
    """Completed epochs, counting from 1."""
    loss: float
    """Mean training loss (the method's loss: adversarial, or CE + beta * KL for TRADES)."""
    accuracy: float | None
    """Accuracy on the clean training batches, from a forward the method makes anyway (standard
    training, TRADES); None for PGD and fgsm_rs, which never forward the clean batch."""
    adv_accuracy: float | None
    """Accuracy on the adversarial examples trained on; None for an epoch of standard training."""
    lr: float
    eps: float
    check_accuracy: float | None = None
    """fgsm_rs: PGD accuracy of the catastrophic-overfitting check after this epoch."""
    val_accuracy: float | None = None
    """Clean accuracy on the validation split (``dataset.validation``), if there is one."""
    val_robust_accuracy: float | None = None
    """Accuracy under the validation attack on the validation split, if there are both."""
    lr_points: list[list[float]] = field(default_factory=list)
    """[step, lr] of this epoch's recorded optimiser steps (per-step schedules only; steps
    count from 1 over the whole run, thinned to at most ``schedule.MAX_LR_POINTS`` a run)."""


class EpochTotals:
    """An epoch's metric sums: on the device between syncs, in Python numbers after them."""

    def __init__(self, device: torch.device) -> None:
        self.loss = 0.0
        self.clean_correct = self.adv_correct = 0
        self.n = self.clean_n = self.adv_n = 0
        self._loss = torch.zeros((), device=device)
        self._first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        """The first step whose loss was NaN or infinite (-1: none), kept on the device."""
        self._clean = torch.zeros((), device=device, dtype=torch.int64)
        self._adv = torch.zeros((), device=device, dtype=torch.int64)
        self.lr_points: list[list[float]] = []
        self.first_lr: float | None = None

    def add(self, batch: BatchLoss, n: int, step: int) -> None:
        """Accumulate one batch without waiting for the device (a non-finite loss is noted by
        its step, on the device, and raised at the next ``sync``)."""
        bad = ~torch.isfinite(batch.loss.detach())
        self._first_bad = torch.where(bad & (self._first_bad < 0),
                                      torch.full_like(self._first_bad, step), self._first_bad)
        self._loss += batch.losses.sum()
        self.n += n
        if batch.clean_hits is not None:
            self._clean += batch.clean_hits.sum()
            self.clean_n += n
        if batch.adv_hits is not None:
            self._adv += batch.adv_hits.sum()
            self.adv_n += n

    def first_bad_step(self) -> int | None:
        """The first step (from 1) of the epoch whose loss was not finite, if any (a sync)."""
        step = int(self._first_bad)
        return step if step >= 0 else None

    def sync(self) -> None:
        """Move the device sums into Python numbers (float32 sums stay short, hence exact enough)."""
        self.loss += float(self._loss)
        self.clean_correct += int(self._clean)
        self.adv_correct += int(self._adv)
        for total in (self._loss, self._clean, self._adv):
            total.zero_()

    def reduce(self, world: World, device: torch.device) -> None:
        """Sum the epoch's totals over every rank (after the last ``sync``)."""
        (self.loss, clean, adv, n, clean_n, adv_n) = all_reduce_sum(
            [self.loss, self.clean_correct, self.adv_correct, self.n, self.clean_n, self.adv_n],
            world, device)
        self.clean_correct, self.adv_correct = int(clean), int(adv)
        self.n, self.clean_n, self.adv_n = int(n), int(clean_n), int(adv_n)

    def metrics(self, epoch: int, lr: float, eps: float,
                check_accuracy: float | None) -> EpochMetrics:
        return EpochMetrics(
            epoch=epoch + 1,
            loss=self.loss / self.n,
            accuracy=self.clean_correct / self.clean_n if self.clean_n else None,
            adv_accuracy=self.adv_correct / self.adv_n if self.adv_n else None,
            lr=lr,
            eps=eps,
            check_accuracy=check_accuracy,
            lr_points=self.lr_points,
        )


class NonFiniteLoss(Refusal):
    """The training loss became NaN or infinite: the run stops, saying where and what to try."""


def check_finite(totals: EpochTotals, epoch: int, precision: Precision) -> None:
    """Raise ``NonFiniteLoss`` naming the epoch and step when a loss so far was not finite."""
    step = totals.first_bad_step()
    if step is None:
        return
    hint = ("; under amp: fp16, try amp: bf16 or off, or a smaller learning rate"
            if precision.dtype == torch.float16 else "; try a smaller learning rate")
    raise NonFiniteLoss(f"loss became NaN at epoch {epoch + 1}, step {step}{hint}")


