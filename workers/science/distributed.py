"""One run over many processes: who this process is, how data and BatchNorm are shared.

The science runs the same code at every world size (``World(rank=0, size=1)`` is a plain
one-process run). With ``size > 1`` a ``torch.distributed`` process group is initialised by
the launcher (``torchrun``, through ``robustlab run --nproc-per-node``) before the science
starts; this module only uses it:

- ``GlobalBatches``: each epoch one global permutation drawn from (seed, epoch), cut into
  global batches of ``batch_size``, each split into ``size`` contiguous rank shards. The
  sequence of global batches is the same at any world size, so a spec means the same
  experiment on 1 or 8 processes, and a run resumes at another world size.
- ``SyncedBatchNorm``: BatchNorm whose training statistics are those of the global batch
  (sums all-reduced through the autograd-aware ``torch.distributed.nn.all_reduce``). Torch's
  own ``nn.SyncBatchNorm`` runs on GPUs only; this one runs on gloo (CPU) as well and keeps
  the state_dict keys of ``nn.BatchNorm*d``, so checkpoints move between world sizes.
  ``local_batchnorm`` turns the syncing off for the attack steps: no collective call runs
  inside an attack, and every rank attacks its own shard.
- ``gather_objects``: per-rank results in rank order, for the sharded evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class World:
    """This process's place in a run: ``rank`` of ``size`` processes, ``nnodes`` machines."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    nnodes: int = 1
    backend: str | None = None
    """"nccl" or "gloo" when a process group is in use; None for one process."""
    sync_batchnorm: bool = True
    """Synchronise BatchNorm statistics across ranks (``--no-sync-batchnorm`` turns it off)."""

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the only process that writes checkpoints, metrics and results."""
        return self.rank == 0


SINGLE = World()
"""A plain one-process run."""


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """(n,) int64: the order of the training examples in epoch ``epoch`` (from 0)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randperm(n, generator=generator)


class GlobalBatches(torch.utils.data.Sampler[list[int]]):
    """This rank's shard of every global batch of one epoch (``set_epoch`` picks the epoch).

    A global batch of B examples gives rank r the examples ``[r * B / W, (r + 1) * B / W)`` of
    it (the last, shorter batch is split as evenly as it goes). A last batch with fewer
    examples than ranks is dropped, so no rank ever trains on an empty shard.
    """

    def __init__(self, n: int, batch_size: int, seed: int, world: World) -> None:
        if batch_size % world.size:
            raise ValueError(f"training.batch_size {batch_size} is the global batch: it must be "
                             f"divisible by the world size {world.size}")
        self.n, self.batch_size, self.seed, self.world = n, batch_size, seed, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[torch.Tensor]:
        order = epoch_permutation(self.n, self.seed, self.epoch)
        batches = list(order.split(self.batch_size))
        if batches and len(batches[-1]) < self.world.size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield shard(batch, self.world).tolist()

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest >= self.world.size else 0)


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """Rank ``world.rank``'s contiguous part of a global batch (sizes differ by at most one)."""
    bounds = [len(batch) * r // world.size for r in range(world.size + 1)]
    return batch[bounds[world.rank]:bounds[world.rank + 1]]


class SyncedBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of a distributed run (any backend), keys unchanged.

    In training mode, the per-channel count, sum and sum of squares of every rank's shard are
    all-reduced (differentiably), so the normalisation, its gradient and the running statistics
    are those of the whole global batch; in eval mode, or inside ``local_batchnorm``, it is a
    plain BatchNorm of this rank's batch.
    """

    synced: bool = True

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input (got {input.dim()}-d)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.synced and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [d for d in range(input.dim()) if d != 1]
        count = torch.full((1,), input.numel() / input.shape[1], device=input.device,
                           dtype=torch.float32)
        stats = torch.cat([count, input.float().sum(dims), (input.float() ** 2).sum(dims)])
        stats = dist_functional.all_reduce(stats)  # (1 + 2C,), gradient all-reduced too
        channels = input.shape[1]
        total, sums, squares = stats[0], stats[1:1 + channels], stats[1 + channels:]
        mean = sums / total
        var = (squares / total - mean ** 2).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None \
                and self.running_var is not None and self.num_batches_tracked is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.view(shape).to(input.dtype)) \
            * torch.rsqrt(var.view(shape) + self.eps).to(input.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_batchnorm(model: nn.Module) -> int:
    """Replace every ``nn.BatchNorm*d`` of ``model`` in place by a ``SyncedBatchNorm`` with the
    same parameters and buffers; returns how many were replaced."""
    replaced = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, SyncedBatchNorm):
                synced = SyncedBatchNorm(child.num_features, child.eps, child.momentum,
                                         child.affine, child.track_running_stats)
                synced.load_state_dict(child.state_dict())
                synced.to(next(iter(child.buffers()), torch.empty(0)).device)
                synced.train(child.training)
                setattr(parent, name, synced)
                replaced += 1
    return replaced


@contextlib.contextmanager
def local_batchnorm(model: nn.Module) -> Iterator[None]:
    """Inside: every ``SyncedBatchNorm`` normalises with this rank's batch alone (no collective
    call), as an attack on this rank's shard must; restored on exit."""
    modules = [m for m in model.modules() if isinstance(m, SyncedBatchNorm)]
    for module in modules:
        module.synced = False
    try:
        yield
    finally:
        for module in modules:
            module.synced = True


def all_reduce_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """``values`` summed over every rank (float64); themselves in a one-process run."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(item: Any, world: World) -> list[Any]:
    """Every rank's ``item`` in rank order (``[item]`` in a one-process run)."""
    if not world.distributed:
        return [item]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, item)
    return gathered


def broadcast_object(item: Any, world: World) -> Any:
    """Rank 0's ``item`` on every rank."""
    if not world.distributed:
        return item
    box = [item]
    dist.broadcast_object_list(box, src=0)
    return box[0]
