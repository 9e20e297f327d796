"""Seeds, optimisers and learning-rate schedules of a training run."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from contract.specs.training import OptimizerConfig, ScheduleConfig


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov's if asked) or Adam; weight decay (L2) on every parameter."""
    if cfg.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                    epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule, stepped once per epoch (cosine anneals to 0 over ``epochs``).

    The per-step kinds (one_cycle, piecewise) get a constant one here: ``schedule.StepRates``
    sets their rate before every step.
    """
    schedulers = torch.optim.lr_scheduler
    if cfg.kind == "step":
        return schedulers.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.kind == "multistep":
        return schedulers.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    if cfg.kind == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=epochs)
    return schedulers.ConstantLR(optimizer, factor=1.0, total_iters=0)
