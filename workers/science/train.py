"""Standard and PGD adversarial training (Madry et al. 2018) with checkpoints and exact resume.

One loop covers both: each batch is replaced by its PGD adversarial example inside the
training ball (``AdversaryConfig``; eps 0 is standard training) before the gradient step.
Progress, per-epoch metrics and checkpoints go out through ``TrainHooks`` callbacks, so the same
code runs in tests, in ``robustlab run`` and in a Celery worker; nothing is printed.

Reproducibility is a contract: a training interrupted at any batch (``Cancelled``) and resumed
from its last checkpoint ends with exactly the parameters an uninterrupted one reaches (same
seed, same device). That is why a checkpoint carries every random generator's state, the
data loader draws its shuffles from its own seeded generator, and loaders use no workers.

Choice of the model's mode during the attack: PGD sees the model in *training* mode, as in
Madry et al.'s own code (cifar10_challenge builds one graph with batch-norm in train mode and
attacks it), so the adversary attacks the very function whose loss is minimised (batch
statistics, not running averages). The attack's forward passes leave the running statistics
untouched (they are restored afterwards); only the training step's forward updates them.
MadryLab's ``robustness`` library instead attacks in eval mode; for the models without
batch-norm (``linear``, ``mnist_cnn``) both choices are the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from service.specs.models import AdversaryConfig, OptimizerConfig, ScheduleConfig, TrainingConfig
from workers.science.attacks import pgd
from workers.science.checkpoints import (
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from workers.science.losses import classification_loss, correct
from workers.science.records import Cancelled


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch of training measured, on the training examples it saw."""

    epoch: int
    """Completed epochs, counting from 1."""
    loss: float
    """Mean training loss (the adversarial loss when eps > 0)."""
    accuracy: float
    """Accuracy on the clean training batches, before each step."""
    adv_accuracy: float | None
    """Accuracy on the PGD examples trained on; None for an epoch of standard training."""
    lr: float
    eps: float


@dataclass
class TrainHooks:
    """Callbacks of a training run (MadryLab robustness' ``iteration_hook``/``epoch_hook``).

    ``on_batch(epoch_index, batches_done, batches_per_epoch)`` after every batch;
    ``on_epoch(metrics)`` after every epoch, before its checkpoint is written;
    ``on_checkpoint(path, epoch, final)`` after every checkpoint written;
    ``should_stop()`` at every batch boundary: True raises ``Cancelled``.
    """

    on_batch: Callable[[int, int, int], None] | None = None
    on_epoch: Callable[[EpochMetrics], None] | None = None
    on_checkpoint: Callable[[Path, int, bool], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclass(frozen=True)
class TrainOutcome:
    """The trained model (on the training device, in train mode) and where its state is saved."""

    model: nn.Module
    final_checkpoint: Path
    resumed_from: int
    """Epochs already completed when this call started (0 for a fresh start)."""
    history: list[EpochMetrics] = field(default_factory=list)
    """Every epoch's metrics, including those of earlier (interrupted) calls."""


# --------------------------------------------------------------------------- building blocks


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD with momentum or Adam; weight decay (L2) on every parameter."""
    if cfg.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                    epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule, stepped once per epoch (cosine anneals to 0 over ``epochs``)."""
    schedulers = torch.optim.lr_scheduler
    if cfg.kind == "step":
        return schedulers.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.kind == "multistep":
        return schedulers.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    if cfg.kind == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=epochs)
    return schedulers.ConstantLR(optimizer, factor=1.0, total_iters=0)


def epoch_eps(adversary: AdversaryConfig, epoch: int) -> float:
    """The training radius in epoch ``epoch`` (counting from 0): eps ramp-up.

    With ``ramp_epochs`` R > 0, eps grows linearly from 0: epoch e uses eps * e / R until it
    reaches eps at epoch R (so the first epoch is standard training). R = 0: eps throughout.
    """
    if adversary.ramp_epochs == 0:
        return adversary.eps
    return adversary.eps * min(1.0, epoch / adversary.ramp_epochs)


def epoch_step_size(adversary: AdversaryConfig, eps: float) -> float:
    """The PGD step size at radius ``eps`` > 0: the configured one, scaled with eps in ramp-up.

    Keeping step_size / eps fixed keeps the attack's geometry (2.5 * eps / steps by default)
    at every radius of the ramp.
    """
    return adversary.resolved_step_size * eps / adversary.eps


class _ModeLocked(nn.Module):
    """The model as the training adversary sees it: in its current mode, whatever PGD asks.

    ``pgd`` switches its model to eval mode; wrapping makes that a no-op, so the attack runs
    in training mode as in Madry et al. (see the module docstring).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def train(self, mode: bool = True) -> _ModeLocked:
        return self


@contextmanager
def _buffers_preserved(model: nn.Module) -> Iterator[None]:
    """Undo any buffer updates (batch-norm running statistics) made inside the block."""
    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


# --------------------------------------------------------------------------- the loop


@dataclass
class _EpochTotals:
    loss: float = 0.0
    clean_correct: int = 0
    adv_correct: int = 0
    n: int = 0

    def metrics(self, epoch: int, lr: float, eps: float) -> EpochMetrics:
        return EpochMetrics(
            epoch=epoch + 1,
            loss=self.loss / self.n,
            accuracy=self.clean_correct / self.n,
            adv_accuracy=self.adv_correct / self.n if eps > 0 else None,
            lr=lr,
            eps=eps,
        )


def _count_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Clean hits in training mode (batch statistics) without touching running statistics."""
    with _buffers_preserved(model), torch.no_grad():
        return int(correct(model(x), y).sum())


def _pgd_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  adversary: AdversaryConfig, eps: float) -> torch.Tensor:
    """Madry et al.'s inner maximisation: PGD from a random start, model left in its mode.

    The last iterate, as in Madry et al.: tracking the worst one would cost a forward per batch
    that the training step repeats anyway.
    """
    with _buffers_preserved(model):
        x_adv = pgd(_ModeLocked(model), x, y, norm=adversary.norm, eps=eps,
                    step_size=epoch_step_size(adversary, eps), steps=adversary.steps,
                    random_start=adversary.random_start, best_iterate=False)
    return x_adv.detach()


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> tuple[float, int]:
    """One gradient step on (x, y); (summed loss, hits) measured by the step's own forward."""
    logits = model(x)  # (B, K)
    losses = classification_loss(logits, y, reduction="none")  # (B,)
    optimizer.zero_grad(set_to_none=True)
    losses.mean().backward()
    optimizer.step()
    return float(losses.detach().sum()), int(correct(logits.detach(), y).sum())


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 adversary: AdversaryConfig, eps: float, *, epoch: int, device: torch.device,
                 hooks: TrainHooks) -> _EpochTotals:
    """One pass over the training data; checks for a stop request before every batch."""
    model.train()
    totals = _EpochTotals()
    n_batches = len(loader)
    for index, (x, y) in enumerate(loader):
        if hooks.should_stop is not None and hooks.should_stop():
            raise Cancelled(f"training stopped in epoch {epoch + 1}, batch {index + 1}")
        x, y = x.to(device), y.to(device)  # (B, C, H, W), (B,)
        if eps > 0:
            totals.clean_correct += _count_correct(model, x, y)
            loss, hits = _train_step(model, optimizer, _pgd_examples(model, x, y, adversary, eps), y)
            totals.adv_correct += hits
        else:
            loss, hits = _train_step(model, optimizer, x, y)
            totals.clean_correct += hits
        totals.loss += loss
        totals.n += len(y)
        if hooks.on_batch is not None:
            hooks.on_batch(epoch, index + 1, n_batches)
    return totals


def _resume(directory: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
            meta: dict[str, Any]) -> tuple[int, list[EpochMetrics]]:
    """Load the latest checkpoint into the training state; (epochs done, history) or (0, [])."""
    latest = latest_checkpoint(directory)
    if latest is None:
        return 0, []
    payload = load_checkpoint(latest)  # on the CPU: load_state_dict copies to the device
    stored = {k: v for k, v in payload["meta"].items() if k != "epoch"}
    if stored != meta:
        raise ValueError(f"{latest} was written by a different training "
                         f"(its meta {stored} differs from {meta}); use a fresh checkpoint_dir")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    restore_rng(payload["rng"], generator)
    return payload["epoch"], [EpochMetrics(**row) for row in payload["history"]]


def train(
    model: nn.Module,
    train_data: Dataset,
    cfg: TrainingConfig,
    adversary: AdversaryConfig,
    *,
    device: torch.device,
    checkpoint_dir: Path,
    seed: int,
    checkpoint_every: int = 1,
    hooks: TrainHooks | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train ``model`` (standard if ``adversary.eps`` is 0, else PGD adversarial training).

    Resumes from the latest checkpoint in ``checkpoint_dir`` when there is one, else seeds
    every generator with ``seed`` and starts at epoch 0. A checkpoint is written every
    ``checkpoint_every`` epochs and after the last one; with all epochs already done the
    call only loads the final state. ``meta`` (plain values) is stored in every checkpoint and
    must match on resume.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to logits (B, K), or (B, 1) for ±1 labels.
        train_data: items (x (C, H, W) in [0, 1], y int64). Augmentation belongs to the
            dataset (a per-item transform); it draws from torch's global generator, which the
            checkpoints save, because the loader runs in this process.

    Raises:
        Cancelled: ``hooks.should_stop()`` turned true; resuming continues from the last
            checkpoint.
    """
    hooks = hooks or TrainHooks()
    meta = dict(meta or {})
    model.to(device)
    optimizer = build_optimizer(model, cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs)
    generator = torch.Generator()
    loader = DataLoader(train_data, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                        num_workers=0)
    start, history = _resume(checkpoint_dir, model=model, optimizer=optimizer,
                             scheduler=scheduler, generator=generator, meta=meta)
    if start == 0:
        seed_everything(seed)
        generator.manual_seed(seed)
    for epoch in range(start, cfg.epochs):
        eps = epoch_eps(adversary, epoch)
        lr = optimizer.param_groups[0]["lr"]
        totals = _train_epoch(model, loader, optimizer, adversary, eps, epoch=epoch,
                              device=device, hooks=hooks)
        scheduler.step()
        history.append(totals.metrics(epoch, lr, eps))
        if hooks.on_epoch is not None:
            hooks.on_epoch(history[-1])
        done = epoch + 1
        if done % checkpoint_every == 0 or done == cfg.epochs:
            path = save_checkpoint(
                checkpoint_path(checkpoint_dir, done), model=model, optimizer=optimizer,
                scheduler=scheduler, epoch=done, rng=capture_rng(generator), meta=meta,
                history=[asdict(m) for m in history],
            )
            if hooks.on_checkpoint is not None:
                hooks.on_checkpoint(path, done, done == cfg.epochs)
    final = checkpoint_path(checkpoint_dir, max(start, cfg.epochs))
    return TrainOutcome(model=model, final_checkpoint=final, resumed_from=start, history=history)
