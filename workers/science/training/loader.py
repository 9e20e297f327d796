"""The training DataLoader: workers, pinned memory and device copies, with per-dataset defaults.

Defaults: in-memory tensor datasets (MNIST, Fashion-MNIST, CIFAR-10: uint8 tensors indexed in
this process) use 0 workers, since a worker would only add inter-process copies; image folders
(ImageNet, JPEG decoding and augmentation per item) use ``min(8, CPUs)`` workers, kept between
epochs. Pinned memory and non-blocking copies are on for CUDA, so the next batch's copy overlaps
the current batch's compute.

The order of the examples is a function of (seed, epoch) alone (``distributed.GlobalBatches``),
the same at every world size; what workers change for exact resume is said in README
"Exact resume".
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset, TensorDataset

from contract.specs.training import TrainingConfig

FOLDER_WORKERS = 8
"""Upper bound of the default worker count for datasets read from files per item."""


@dataclass(frozen=True)
class LoaderSettings:
    """Resolved ``training.num_workers`` / ``pin_memory`` / ``persistent_workers``."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool


def in_memory(data: Dataset) -> bool:
    """Whether items are slices of tensors held in memory (``tensors`` of robustlab's own
    ``ImageTensorDataset``, or torch's ``TensorDataset``), looking through subsets."""
    if isinstance(data, Subset):
        return in_memory(data.dataset)
    if isinstance(data, ConcatDataset):
        return all(in_memory(part) for part in data.datasets)
    return isinstance(data, TensorDataset) or callable(getattr(data, "tensors", None))


def loader_settings(cfg: TrainingConfig, data: Dataset, device: torch.device) -> LoaderSettings:
    """``cfg``'s loader settings with the defaults filled in for ``data`` on ``device``."""
    if cfg.num_workers is not None:
        workers = cfg.num_workers
    else:
        workers = 0 if in_memory(data) else min(FOLDER_WORKERS, os.cpu_count() or 1)
    pin = device.type == "cuda" if cfg.pin_memory is None else cfg.pin_memory
    persistent = workers > 0 if cfg.persistent_workers is None else cfg.persistent_workers
    return LoaderSettings(num_workers=workers, pin_memory=pin,
                          persistent_workers=persistent and workers > 0)


WORKER_START = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
"""How loader workers start: never by a plain fork of this process. A forked worker inherits
whatever this process holds: in a Celery worker (or after any Celery client was used) kombu's
after-fork hook then closes the inherited Redis connections from the child and can block on
them forever, and a process that has initialised CUDA cannot be forked safely either."""


def training_loader(data: Dataset, settings: LoaderSettings,
                    batches: Sampler[list[int]]) -> DataLoader:
    """The batches ``batches`` yields (``distributed.GlobalBatches``: this rank's shard of each
    global batch of the epoch it is set to), read with ``settings``."""
    context = WORKER_START if settings.num_workers > 0 else None
    return DataLoader(data, batch_sampler=batches,
                      num_workers=settings.num_workers, pin_memory=settings.pin_memory,
                      persistent_workers=settings.persistent_workers,
                      multiprocessing_context=context)


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, *, non_blocking: bool,
              channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the training device; ``non_blocking`` only pays off from pinned memory."""
    memory_format = torch.channels_last if channels_last and x.dim() == 4 else torch.contiguous_format
    x = x.to(device, non_blocking=non_blocking, memory_format=memory_format)  # (B, C, H, W)
    return x, y.to(device, non_blocking=non_blocking)  # (B,)
