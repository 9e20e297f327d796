"""The training loop: epochs of one method's batches, checkpoints and exact resume.

Each batch goes through the method named by ``adversary.method`` (``methods.training_method``; eps 0
is standard training for every method), then one backward pass and one optimiser step
(``precision.Precision``: autocast and, for fp16, loss scaling). Progress, per-epoch metrics and
checkpoints go out through ``TrainHooks`` callbacks, so the same code runs in tests, in
``robustlab run`` and in a Celery worker; nothing is printed.

Metrics cost nothing extra: they come from the forwards the method makes anyway, accumulate on
the training device, and are read back to the host once every ``METRIC_SYNC_EVERY`` batches
and at the end of the epoch, so the device never waits for the host in between.

Field recipes ride along without changing an existing spec's training: per-step learning rates
(one_cycle, piecewise, warm-up; ``schedule.StepRates``) are set before each step only when the
spec asks for them; ``training.ema`` keeps a weight average (``ema.WeightAverage``) updated after
every step; ``validation`` scores the weights the run stands for after every epoch, and
``training.select`` keeps the best epoch's in ``best.pt`` (``selection``). Each is a function of
state the checkpoint holds (epoch, history, the average), so exact resume still holds.

Reproducibility is a contract: a training interrupted at any batch (``Cancelled``) and resumed
from its last checkpoint ends with exactly the parameters an uninterrupted one reaches (same
seed, same device, 0 loader workers; any ``amp``). That is why a checkpoint carries every
random generator's state and the fp16 gradient scaler's, and the data loader draws its shuffles
from its own seeded generator. README "Exact resume" says what loader workers change.

Distributed (``world.size > 1``, ``workers.science.distributed``): ``training.batch_size`` is
the global batch; every epoch's global batches come from one permutation of (seed, epoch)
and each rank trains on its shard, through ``DistributedDataParallel`` (gradients averaged;
a rank's loss is weighted by its share of the global batch, so uneven last shards still give
the global mean). BatchNorm statistics are synchronised unless ``world.sync_batchnorm`` is off.
Attacks run on each rank's shard through the unwrapped module with rank-local BatchNorm.
Metrics are summed over the ranks; only rank 0 writes checkpoints.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from contract.records import Cancelled
from contract.specs.training import PER_ITERATION_KINDS, AdversaryConfig, TrainingConfig
from workers.science.checkpoints import (
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from workers.science.distributed import (
    SINGLE,
    GlobalBatches,
    World,
    convert_batchnorm,
    local_batchnorm,
)
from workers.science.training.common import (
    BatchSetup,
    TrainingMethod,
    epoch_eps,
    epoch_step_size,
    standard,
)
from workers.science.training.ema import WeightAverage
from workers.science.training.loader import loader_settings, to_device, training_loader
from workers.science.training.methods import training_method
from workers.science.training.optim import build_optimizer, build_scheduler, seed_everything
from workers.science.training.overfit import check_overfitting, robust_accuracy
from workers.science.training.precision import Precision, use_channels_last
from workers.science.training.schedule import StepRates
from workers.science.training.selection import (
    Selection,
    is_best_epoch,
    save_best,
    selection_of,
)
from workers.science.training.totals import (
    METRIC_SYNC_EVERY,
    EpochMetrics,
    EpochTotals,
    check_finite,
)
from workers.science.training.validation import ValidationSet, validate


@dataclass
class TrainHooks:
    """Callbacks of a training run (MadryLab robustness' ``iteration_hook``/``epoch_hook``).

    ``on_batch(epoch_index, batches_done, batches_per_epoch)`` after every batch;
    ``on_epoch(metrics)`` after every epoch, before its checkpoint is written;
    ``on_checkpoint(path, epoch, final)`` after every checkpoint written;
    ``on_resume(path, epoch, history)`` once, when a call continues from a checkpoint, with the
    metrics of every epoch already done: a process killed between writing a checkpoint and
    reporting it (or its epoch) lost those reports, and this is where they are made again;
    ``should_stop()`` at every batch boundary: True raises ``Cancelled``.
    """

    on_batch: Callable[[int, int, int], None] | None = None
    on_epoch: Callable[[EpochMetrics], None] | None = None
    on_checkpoint: Callable[[Path, int, bool], None] | None = None
    on_resume: Callable[[Path, int, list[EpochMetrics]], None] | None = None
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
    ema_model: nn.Module | None = None
    """The weight average (``training.ema``), in eval mode; None without it."""
    best: Selection | None = None
    """The epoch ``training.select`` chose and its checkpoint; None for select 'final'."""

    @property
    def evaluated_model(self) -> nn.Module:
        """The final weights the run stands for: the average when there is one."""
        return self.ema_model if self.ema_model is not None else self.model


@dataclass(frozen=True)
class _Run:
    """What every batch of one training needs besides the data."""

    model: nn.Module
    """What the training forward goes through: the model, or its DDP wrapper."""
    attack_model: nn.Module | None
    """The unwrapped module with rank-local BatchNorm in a distributed run, else None."""
    optimizer: torch.optim.Optimizer
    precision: Precision
    device: torch.device
    non_blocking: bool
    channels_last: bool
    hooks: TrainHooks
    world: World
    rates: StepRates
    ema: WeightAverage | None


def _train_epoch(run: _Run, loader: DataLoader, method: TrainingMethod, setup: BatchSetup, *,
                 epoch: int) -> EpochTotals:
    """One pass over the training data; checks for a stop request before every batch."""
    run.model.train()
    totals = EpochTotals(run.device)
    sampler = loader.batch_sampler
    assert isinstance(sampler, GlobalBatches)
    sampler.set_epoch(epoch)
    sizes = [len(batch) for batch in sampler.global_batches()]
    n_batches = len(sizes)
    run.rates.start_epoch()
    for index, (x, y) in enumerate(loader):
        if run.hooks.should_stop is not None and run.hooks.should_stop():
            raise Cancelled(f"training stopped in epoch {epoch + 1}, batch {index + 1}")
        x, y = to_device(x, y, run.device, non_blocking=run.non_blocking,
                         channels_last=run.channels_last)  # (B / W, C, H, W), (B / W,)
        batch = method(run.model, x, y, setup)
        loss = batch.loss
        if run.world.distributed:  # DDP averages over ranks: weigh this rank by its share
            loss = loss * (len(y) * run.world.size / sizes[index])
        point = run.rates.before_step(epoch, index)
        if totals.first_lr is None:
            totals.first_lr = run.optimizer.param_groups[0]["lr"]
        if point is not None:
            totals.lr_points.append([point[0], point[1]])
        run.precision.step(loss, run.optimizer)
        if run.ema is not None:
            run.ema.update()
        totals.add(batch, len(y), index + 1)
        if (index + 1) % METRIC_SYNC_EVERY == 0:
            check_finite(totals, epoch, run.precision)
            totals.sync()
        if run.hooks.on_batch is not None:
            run.hooks.on_batch(epoch, index + 1, n_batches)
    check_finite(totals, epoch, run.precision)
    totals.sync()
    totals.reduce(run.world, run.device)
    run.rates.end_epoch()
    return totals


def _batch_setup(adversary: AdversaryConfig, eps: float, precision: Precision,
                 attack_model: nn.Module | None) -> BatchSetup:
    step_size = epoch_step_size(adversary, eps) if eps > 0 else 0.0
    return BatchSetup(adversary=adversary, eps=eps, step_size=step_size,
                      autocast=precision.autocast,
                      attack_loss_scale=precision.attack_loss_scale, attack_model=attack_model)


_BUFFER_SYNC = ("forward_sync_buffers" if "forward_sync_buffers" in
                inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
                else "broadcast_buffers")


class _LocalStatistics(nn.Module):
    """The model with rank-local BatchNorm: what a rank's attack runs through."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with local_batchnorm(self.model):
            return self.model(x)


def _distribute(model: nn.Module, world: World,
                device: torch.device) -> tuple[nn.Module, nn.Module | None]:
    """(what the training forward uses, what attacks use): the model itself in one process;
    its DDP wrapper and the unwrapped module with local BatchNorm across several."""
    if not world.distributed:
        return model, None
    if world.sync_batchnorm:
        convert_batchnorm(model)
    # Synced BatchNorm keeps the running statistics equal on every rank: no buffer broadcast
    # per forward (torch >= 2.12 names the setting forward_sync_buffers).
    sync: dict[str, Any] = {_BUFFER_SYNC: not world.sync_batchnorm}
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, **sync)
    return ddp, _LocalStatistics(model)


def _resume(directory: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
            precision: Precision, meta: dict[str, Any], hooks: TrainHooks,
            ema: WeightAverage | None) -> tuple[int, list[EpochMetrics]]:
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
    precision.load_state_dict(payload.get("scaler"))
    if ema is not None:
        ema.load_state_dict(payload["ema"])
    restore_rng(payload["rng"], generator)
    history = [EpochMetrics(**row) for row in payload["history"]]
    if hooks.on_resume is not None:
        hooks.on_resume(latest, payload["epoch"], list(history))
    return payload["epoch"], history


def _overfit_check(model: nn.Module, data: Dataset, adversary: AdversaryConfig, eps: float, *,
                   epoch: int, device: torch.device, seed: int) -> float | None:
    """fgsm_rs with its check on and eps > 0: the PGD accuracy of the check, else None."""
    if adversary.method != "fgsm_rs" or not adversary.overfit_check or eps <= 0:
        return None
    return robust_accuracy(model, data, adversary, eps, device=device, seed=seed + epoch)


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
    world: World = SINGLE,
    validation: ValidationSet | None = None,
) -> TrainOutcome:
    """Train ``model`` with ``adversary.method`` (standard training where eps is 0).

    Resumes from the latest checkpoint in ``checkpoint_dir`` when there is one, else seeds
    every generator with ``seed`` and starts at epoch 0. A checkpoint is written every
    ``checkpoint_every`` epochs and after the last one; with all epochs already done the
    call only loads the final state. ``meta`` (plain values) is stored in every checkpoint and
    must match on resume. ``world``: this process's rank in a distributed run (every rank
    calls ``train``; only rank 0 writes checkpoints; a checkpoint of any world size resumes).
    ``validation``: held-out examples scored after every epoch (``val_accuracy``,
    ``val_robust_accuracy``), which ``cfg.select`` best_* selects on; the selected epoch's
    weights go to ``selection.best_path(checkpoint_dir)``.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to logits (B, K), or (B, 1) for ±1 labels.
        train_data: items (x (C, H, W) in [0, 1], y int64). Augmentation belongs to the
            dataset (a per-item transform); with 0 loader workers it draws from torch's global
            generator, which the checkpoints save.

    Raises:
        Cancelled: ``hooks.should_stop()`` turned true; resuming continues from the last
            checkpoint.
        CatastrophicOverfitting: fgsm_rs lost its robustness to PGD (``overfit_check``); the
            epoch's metrics were reported, its checkpoint not written.
    """
    hooks = hooks or TrainHooks()
    meta = dict(meta or {})
    channels_last = use_channels_last(cfg, model, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    precision = Precision(cfg.amp, device)
    optimizer = build_optimizer(model, cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs)
    ema = WeightAverage(model, cfg.ema) if cfg.ema is not None else None
    generator = torch.Generator()
    settings = loader_settings(cfg, train_data, device)
    sampler = GlobalBatches(len(train_data), cfg.batch_size, seed, world)  # type: ignore[arg-type]
    loader = training_loader(train_data, settings, sampler)
    rates = StepRates(optimizer, cfg.schedule, lr=cfg.optimizer.lr, epochs=cfg.epochs,
                      batches_per_epoch=len(sampler))
    start, history = _resume(checkpoint_dir, model=model, optimizer=optimizer,
                             scheduler=scheduler, generator=generator, precision=precision,
                             meta=meta, hooks=hooks, ema=ema)
    if start == 0:
        seed_everything(seed + world.rank)  # augmentation and random starts differ per rank
        generator.manual_seed(seed)
    trained, attack_model = _distribute(model, world, device)
    run = _Run(model=trained, attack_model=attack_model, optimizer=optimizer,
               precision=precision, device=device, non_blocking=settings.pin_memory,
               channels_last=channels_last, hooks=hooks, world=world, rates=rates, ema=ema)
    evaluated = ema.model if ema is not None else model
    for epoch in range(start, cfg.epochs):
        eps = epoch_eps(adversary, epoch)
        lr = optimizer.param_groups[0]["lr"]
        method = training_method(adversary.method) if eps > 0 else standard
        totals = _train_epoch(run, loader, method,
                              _batch_setup(adversary, eps, precision, attack_model), epoch=epoch)
        if cfg.schedule.kind in PER_ITERATION_KINDS and totals.first_lr is not None:
            lr = totals.first_lr  # the rate of the epoch's first step
        scheduler.step()
        check = _overfit_check(model, train_data, adversary, eps, epoch=epoch, device=device,
                               seed=seed)
        earlier = [(m.epoch, m.check_accuracy) for m in history
                   if m.check_accuracy is not None and m.eps == eps]
        metrics = totals.metrics(epoch, lr, eps, check)
        if validation is not None:
            val_clean, val_robust = validate(evaluated, validation, device=device,
                                             seed=seed + epoch)
            metrics = replace(metrics, val_accuracy=val_clean, val_robust_accuracy=val_robust)
        history.append(metrics)
        if hooks.on_epoch is not None:
            hooks.on_epoch(history[-1])
        if check is not None:
            check_overfitting(check, earlier, epoch=epoch + 1, adversary=adversary)
        done = epoch + 1
        if world.leader and is_best_epoch(history, cfg.select, done):
            save_best(checkpoint_dir, model=evaluated, epoch=done, meta=meta,
                      history=[asdict(m) for m in history])
        if world.leader and (done % checkpoint_every == 0 or done == cfg.epochs):
            path = save_checkpoint(
                checkpoint_path(checkpoint_dir, done), model=model, optimizer=optimizer,
                scheduler=scheduler, epoch=done, rng=capture_rng(generator), meta=meta,
                history=[asdict(m) for m in history], scaler=precision.state_dict(),
                ema=None if ema is None else ema.state_dict(),
            )
            if hooks.on_checkpoint is not None:
                hooks.on_checkpoint(path, done, done == cfg.epochs)
    final = checkpoint_path(checkpoint_dir, max(start, cfg.epochs))
    return TrainOutcome(model=model, final_checkpoint=final, resumed_from=start, history=history,
                        ema_model=None if ema is None else ema.model,
                        best=selection_of(history, cfg.select, checkpoint_dir))
