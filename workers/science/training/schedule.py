"""Per-step learning rates: one_cycle, piecewise and warm-up (``ScheduleConfig``).

The epoch kinds (constant, step, multistep, cosine) stay torch schedulers stepped once per epoch
(``optim.build_scheduler``), so every spec written before these kinds trains bit for bit as
before: when ``ScheduleConfig.per_iteration`` is false, ``StepRates`` touches nothing.

Otherwise the rate of optimiser step k = 1..T (T = epochs x batches per epoch) is set just
before that step, from the fractional epoch t = k / batches_per_epoch: Wong et al.'s fast-AT code
(``np.interp([t], [0, 2/5 * epochs, epochs], [0, lr_max, 0])`` with t = epoch + (i + 1) /
len(loader)) and Rice et al.'s (the same t) do exactly this. A pure function of (epoch, batch
index), so exact resume needs no state beyond the epoch count the checkpoint already holds.

For the epoch kinds with a warm-up, the torch scheduler's rate of the epoch is the base that the
warm-up factor multiplies; the base is put back before the scheduler steps, because torch's
chainable schedulers (StepLR, MultiStepLR) read the optimiser's current rate.
"""

from __future__ import annotations

import math

import torch

from contract.specs.training import ScheduleConfig

MAX_LR_POINTS = 10_000
"""At most this many ``lr_per_iteration`` points per run (thinned evenly)."""


def one_cycle(t: float, epochs: int, lr: float, peak: float) -> float:
    """Rate at fractional epoch ``t``: 0 -> ``lr`` at ``peak * epochs`` -> 0 at ``epochs``."""
    top = peak * epochs
    if t <= top:
        return lr * t / top
    return max(0.0, lr * (epochs - t) / (epochs - top))


def piecewise(t: float, points: list[tuple[float, float]]) -> float:
    """``points`` interpolated linearly at ``t``; constant outside; the later of two points at
    the same epoch holds from that epoch on (a drop)."""
    last = max((i for i, (epoch, _) in enumerate(points) if epoch <= t), default=None)
    if last is None:
        return points[0][1]
    if last == len(points) - 1:
        return points[-1][1]
    (t0, lr0), (t1, lr1) = points[last], points[last + 1]
    return lr0 + (lr1 - lr0) * (t - t0) / (t1 - t0)  # t1 > t since `last` is the last <= t


def warmup_factor(step: int, batches_per_epoch: int, warmup_epochs: float) -> float:
    """min(1, k / (W x batches per epoch)) for step k (from 1); 1 without a warm-up."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, step / (warmup_epochs * batches_per_epoch))


def step_rate(cfg: ScheduleConfig, *, lr: float, base: float, step: int, batches_per_epoch: int,
              epochs: int) -> float:
    """The rate of optimiser step ``step`` (from 1) of a per-step schedule.

    ``lr`` is ``optimizer.lr`` (one_cycle's peak); ``base`` the epoch scheduler's rate of the
    current epoch (what the warm-up multiplies for the epoch kinds).
    """
    t = step / batches_per_epoch
    if cfg.kind == "one_cycle":
        rate = one_cycle(t, epochs, lr, cfg.peak)
    elif cfg.kind == "piecewise":
        rate = piecewise(t, [(float(e), float(v)) for e, v in cfg.points])
    else:
        rate = base
    return rate * warmup_factor(step, batches_per_epoch, cfg.warmup_epochs)


def thinning_stride(total_steps: int, limit: int = MAX_LR_POINTS) -> int:
    """Record every stride-th step (steps 1, 1 + stride, ...): at most ``limit`` points."""
    return max(1, math.ceil(total_steps / limit))


class StepRates:
    """Sets the optimiser's rate before every step of a per-step schedule; idle otherwise."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, *, lr: float,
                 epochs: int, batches_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.lr = lr
        self.epochs = epochs
        self.batches_per_epoch = batches_per_epoch
        self.active = cfg.per_iteration
        self.stride = thinning_stride(epochs * batches_per_epoch)
        self._base: list[float] = []

    def start_epoch(self) -> None:
        """Remember the epoch scheduler's rates (the warm-up's base for the epoch kinds)."""
        self._base = [group["lr"] for group in self.optimizer.param_groups]

    def before_step(self, epoch: int, index: int) -> tuple[int, float] | None:
        """Set the rate of batch ``index`` (from 0) of ``epoch`` (from 0); (step, rate) when
        the step is one of the recorded (thinned) points, else None."""
        if not self.active:
            return None
        step = epoch * self.batches_per_epoch + index + 1
        rate = 0.0
        for group, base in zip(self.optimizer.param_groups, self._base, strict=True):
            rate = step_rate(self.cfg, lr=self.lr, base=base, step=step,
                             batches_per_epoch=self.batches_per_epoch, epochs=self.epochs)
            group["lr"] = rate
        return (step, rate) if (step - 1) % self.stride == 0 else None

    def end_epoch(self) -> None:
        """Put the epoch scheduler's rates back before it steps (a no-op when idle)."""
        if self.active:
            for group, base in zip(self.optimizer.param_groups, self._base, strict=True):
                group["lr"] = base
