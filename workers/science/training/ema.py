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
        """Fold the source model's weights after one optimiser step into the average.

        One multi-tensor lerp (``ema + (1 - decay) * (w - ema)``, as ``torch.optim.swa_utils``'
        EMA does) instead of a mul and an add per parameter: a few kernel launches per step
        whatever the depth of the network."""
        # Listed at every step: ``module.to(...)`` may swap a tensor's storage under it.
        torch._foreach_lerp_(list(self.model.parameters()), list(self.source.parameters()),
                             1 - self.decay)
        kept = list(self.model.buffers())
        if kept:
            torch._foreach_copy_(kept, list(self.source.buffers()))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
