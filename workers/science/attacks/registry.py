"""Dispatch from an attack spec to the function that runs it: the one path evaluation takes.

Each attack class of ``contract.specs.attacks`` names its ``run_spec`` as ``module:function``;
it is imported the first time that kind runs (a plugin's too), then cached. Nothing here
asks which class a spec is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from contract.registry import load_object
from contract.specs.attacks import AttackSpec
from workers.science.attacks.common import AttackRun

AttackFn = Callable[[Any, nn.Module, torch.Tensor, torch.Tensor, torch.Generator | None],
                    AttackRun]
"""``run_spec(spec, model, x (B, C, H, W), y (B,), generator) -> AttackRun``."""

_FUNCTIONS: dict[type[AttackSpec], AttackFn] = {}


def attack_function(spec: AttackSpec) -> AttackFn:
    """The ``run_spec`` function implementing ``spec``'s kind (imported once per kind)."""
    model = type(spec)
    if model not in _FUNCTIONS:
        function = load_object(model.implementation)
        if not callable(function):
            raise TypeError(f"attack {spec.kind!r}: {model.implementation} is not callable")
        _FUNCTIONS[model] = function
    return _FUNCTIONS[model]


def run_attack_spec(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    generator: torch.Generator | None = None) -> AttackRun:
    """Run the configured attack on one batch."""
    return attack_function(spec)(spec, model, x, y, generator)
