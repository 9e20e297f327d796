"""Publishing a model as the field does: RobustBench's checkpoint, key for key.

``robustbench_model`` turns a robustlab model of one of the field's architectures
(``workers.science.models.field``) into what RobustBench's model zoo holds: a state_dict in
the key layout of their class, the architecture as their ``model_info`` writes it
("WideResNet-28-10") and the constructor call that rebuilds their network for it.
``write_robustbench_checkpoint`` saves ``{"state_dict": ...}``, the shape of their files.

RobustBench's models take [0, 1] images. A network that robustlab puts behind the dataset's
normalisation (``normalization: dataset``, the default of ``preact_resnet18`` and
``wide_resnet`` on a dataset that has one) cannot be written in their layout, which has no place
for it: such a model is refused, naming the two ways out (``normalization: none``, or
``dm_wide_resnet``, which normalises inside itself as theirs does).

The torch-free half (which result rows, the ``model_info`` JSON) is
``service.robustbench_export``; ``robustlab export robustbench`` only orchestrates.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contract.datasets import DatasetInfo
from contract.errors import Refusal
from contract.specs.architecture import ModelConfig
from workers.science.models import NormalizedModel, inner_network
from workers.science.models import field as field_models
from workers.science.state_dicts import load_source_model

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "preact_resnet18": field_models.preact_resnet18,
    "wide_resnet": field_models.wide_resnet,
    "dm_wide_resnet": field_models.dm_wide_resnet,
}
"""The architectures with a RobustBench layout, and their builders (for kwargs' defaults)."""
RGB_ONLY = {"preact_resnet18": "PreActResNet", "wide_resnet": "WideResNet"}
"""RobustBench classes whose first conv takes exactly 3 channels."""


class ExportRefused(ValueError, Refusal):
    """A model that cannot be written in RobustBench's layout; the message is one line."""


@dataclass(frozen=True)
class RobustBenchModel:
    """A network in RobustBench's layout: its weights, their architecture name, their class."""

    state_dict: dict[str, torch.Tensor]
    architecture: str
    """As RobustBench's model_info writes it: ``PreActResNet-18``, ``WideResNet-28-10``."""
    constructor: str
    """The call of their class (``robustbench.model_zoo.architectures``) it loads into strictly."""
    num_classes: int


def load_for_export(path: Path, *, model_cfg: ModelConfig | None,
                    info_for: Callable[[], DatasetInfo]) -> tuple[nn.Module, dict[str, Any]]:
    """The model a run evaluated (its checkpoint file, on the CPU), with the checkpoint's meta."""
    return load_source_model(path, torch.device("cpu"), model_cfg=model_cfg, info_for=info_for)


def _settings(arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The builder's keyword arguments: its defaults, overridden by the model's kwargs."""
    parameters = inspect.signature(BUILDERS[arch]).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return {**defaults, **kwargs}


def robustbench_model(model: nn.Module, arch: str, kwargs: dict[str, Any]) -> RobustBenchModel:
    """``model`` (built as ``arch`` with ``kwargs``) in RobustBench's layout, or ExportRefused."""
    if arch not in BUILDERS:
        raise ExportRefused(f"arch {arch!r} has no RobustBench layout: export takes "
                            f"{', '.join(BUILDERS)}")
    if isinstance(model, NormalizedModel):
        raise ExportRefused(
            f"the model puts the dataset's normalisation in front of its {arch}, which "
            "RobustBench's models (on [0, 1] images) have no place for: use "
            "`normalization: none` in model.kwargs, or `dm_wide_resnet` (it normalises itself)")
    net = inner_network(model)
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    if arch in RGB_ONLY and first_conv.in_channels != 3:
        raise ExportRefused(f"RobustBench's {RGB_ONLY[arch]} takes RGB images; this {arch} "
                            f"takes {first_conv.in_channels} channel(s)")
    settings = _settings(arch, kwargs)
    classes = next(m for m in reversed(list(net.modules())) if isinstance(m, nn.Linear)).out_features
    state = {key: value.detach().cpu().clone() for key, value in net.state_dict().items()}
    if arch == "preact_resnet18":
        return RobustBenchModel(state, "PreActResNet-18", num_classes=classes, constructor=(
            f"resnet.PreActResNet(resnet.PreActBlock, [2, 2, 2, 2], num_classes={classes}, "
            f"bn_before_fc={settings['bn_before_fc']}, out_shortcut={settings['out_shortcut']})"))
    if arch == "wide_resnet":
        return RobustBenchModel(
            state, f"WideResNet-{settings['depth']}-{settings['widen_factor']}", num_classes=classes,
            constructor=f"wide_resnet.WideResNet(depth={settings['depth']}, num_classes={classes}, "
            f"widen_factor={settings['widen_factor']}, sub_block1={settings['sub_block1']}, "
            f"dropRate={float(settings['dropout'])}, bias_last={settings['bias_last']})")
    activation = {"relu": "nn.ReLU", "swish": "dm_wide_resnet.Swish",
                  "silu": "nn.SiLU"}[settings["activation"]]
    assert isinstance(net, field_models.DMWideResNet)
    mean = tuple(round(v, 6) for v in net.mean.flatten().tolist())
    std = tuple(round(v, 6) for v in net.std.flatten().tolist())
    return RobustBenchModel(
        state, f"WideResNet-{settings['depth']}-{settings['width']}", num_classes=classes,
        constructor=f"dm_wide_resnet.DMWideResNet(num_classes={classes}, depth={settings['depth']}, "
        f"width={settings['width']}, activation_fn={activation}, mean={mean}, std={std}, "
        f"padding={settings['padding']}, num_input_channels={len(mean)})")


def write_robustbench_checkpoint(exported: RobustBenchModel, path: Path) -> Path:
    """``torch.save({"state_dict": ...})`` as RobustBench's model zoo files, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"state_dict": exported.state_dict}, handle)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
