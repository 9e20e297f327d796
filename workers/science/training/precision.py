"""Mixed precision and memory format: how the training uses the hardware, not what it learns.

``amp: bf16 | fp16`` runs every forward pass of the training and of its attacks under
``torch.autocast``; fp16 adds a ``GradScaler`` (dynamic loss scaling, so small gradients survive
fp16), whose state is saved in every checkpoint so that a resumed run scales as an
uninterrupted one would. Losses are always computed in float32. bf16 needs no scaling (it has
float32's exponent range). Autocast runs on the CPU too (bf16 and fp16), which is how the tests
check it; on CUDA it is where the speed is.

``channels_last`` (NHWC) lets cuDNN use its fastest convolution kernels with tensor cores; the
model's parameters and every batch are converted once, the attack's iterates inherit the
layout.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from contract.specs.training import TrainingConfig

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
FP16_ATTACK_LOSS_SCALE = 1024.0
"""fp16 only: the attack loss is multiplied by this before its input gradient. Per-pixel input
gradients of a cross-entropy are often below fp16's smallest normal number (6e-5) and would
flush to zero, making sign() zero; the step direction does not depend on the factor. A fixed
factor, not the GradScaler's dynamic one: an attack step cannot be skipped on overflow."""


class Precision:
    """Autocast context, loss scaling and the optimiser step for one ``training.amp`` setting."""

    def __init__(self, amp: str, device: torch.device) -> None:
        if amp != "off" and amp not in DTYPES:
            raise ValueError(f"unknown amp setting {amp!r}; known: off, {', '.join(DTYPES)}")
        self.amp = amp
        self.device_type = device.type
        self.dtype = DTYPES.get(amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    @property
    def attack_loss_scale(self) -> float:
        return FP16_ATTACK_LOSS_SCALE if self.amp == "fp16" else 1.0

    def autocast(self) -> AbstractContextManager[Any]:
        """The context of every forward pass: autocast to bf16/fp16, or nothing."""
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32,
                              enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimiser step; with fp16 scaled, skipped on inf/NaN gradients."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state for a checkpoint (None unless fp16)."""
        return self.scaler.state_dict() if self.scaler.is_enabled() else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)


def is_conv_net(model: nn.Module) -> bool:
    """Whether ``model`` has 2-d convolutions (where channels_last can help)."""
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


def use_channels_last(cfg: TrainingConfig, model: nn.Module, device: torch.device) -> bool:
    """``training.channels_last``, by default on for conv nets on CUDA only.

    On the CPU, NHWC convolutions are not faster for these small nets, and MPS' support is
    uneven; so the default stays NCHW there.
    """
    wanted = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    return wanted and is_conv_net(model)
