"""Checkpoint selection on the validation split (``training.select``).

``best_robust`` keeps the weights of the epoch with the highest ``val_robust_accuracy``,
``best_clean`` of the highest ``val_accuracy`` (the first such epoch on a tie): Rice et al.'s
early stopping. The chosen weights (the EMA ones when ``training.ema`` is set) are written to
``best.pt`` beside the epoch checkpoints whenever an epoch beats every earlier one, before that
epoch's own checkpoint, so a run resumed at any point rewrites the same file. The choice is a
function of the metric history alone, which every epoch checkpoint holds: resume needs no more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from workers.science.checkpoints import capture_rng, save_checkpoint

SELECT_METRICS = {"best_robust": "val_robust_accuracy", "best_clean": "val_accuracy"}
"""``training.select`` -> the epoch metric it maximises."""
BEST_NAME = "best.pt"


def best_path(directory: Path) -> Path:
    """Where the selected epoch's weights live (outside the ``epoch-NNNN.pt`` pattern, so
    resume never mistakes it for the latest training state)."""
    return directory / BEST_NAME


@dataclass(frozen=True)
class Selection:
    """The epoch ``training.select`` chose, by which metric, and where its weights are."""

    checkpoint: Path
    epoch: int
    metric: str
    value: float

    def facts(self) -> dict[str, Any]:
        """The provenance entry ``selected`` (``runs show``)."""
        return {"checkpoint": "best", "epoch": self.epoch, "metric": self.metric,
                "value": self.value}


def best_epoch(history: Sequence[Any], select: str) -> tuple[int, float] | None:
    """(epoch, value) of the first epoch with the highest selection metric; None for select
    'final' or before any epoch has the metric."""
    metric = SELECT_METRICS.get(select)
    if metric is None:
        return None
    best: tuple[int, float] | None = None
    for row in history:
        value = getattr(row, metric)
        if value is not None and (best is None or value > best[1]):
            best = (row.epoch, value)
    return best


def is_best_epoch(history: Sequence[Any], select: str, epoch: int) -> bool:
    """Whether ``epoch`` (the last of ``history``) is the one selected so far."""
    best = best_epoch(history, select)
    return best is not None and best[0] == epoch


def save_best(directory: Path, *, model: nn.Module, epoch: int, meta: dict[str, Any],
              history: list[dict[str, Any]]) -> Path:
    """Write the selected weights as a checkpoint ``load_model`` reads (no optimiser state)."""
    return save_checkpoint(best_path(directory), model=model, optimizer=None, scheduler=None,
                           epoch=epoch, rng=capture_rng(), meta={**meta, "best": True},
                           history=history)


def selection_of(history: Sequence[Any], select: str, directory: Path) -> Selection | None:
    """The selection a finished training made; None for select 'final'."""
    best = best_epoch(history, select)
    if best is None:
        return None
    return Selection(checkpoint=best_path(directory), epoch=best[0],
                     metric=SELECT_METRICS[select], value=best[1])
