"""An exponential moving average of the weights (``training.ema``), as Gowal et al. 2020 use.

After every optimiser step: ema <- decay * ema + (1 - decay) * weights, for every parameter;
buffers (BatchNorm running statistics, its batch counter) are copied as they are, since an
average of running averages is not what the averaged weights saw. The average starts equal to
the initial weights. It lives in a copy of the model, so it can be evaluated and attacked like
any model; the checkpoint holds its state next to the trained weights, and resume is exact.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """The averaged copy of ``model`` (the module trained, not a DDP wrapper) and its update."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.source = model
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.model.eval()

    @torch.no_grad()
    def update(self) -> None:
        """Fold the source model's weights after one optimiser step into the average."""
        source = self.source
        for average, current in zip(self.model.parameters(), source.parameters(), strict=True):
            average.mul_(self.decay).add_(current.detach(), alpha=1 - self.decay)
        for kept, buffer in zip(self.model.buffers(), source.buffers(), strict=True):
            kept.copy_(buffer)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
