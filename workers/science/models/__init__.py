"""Models: any network the catalog names, behind the dataset's normalisation.

``build_model(arch, num_classes, dataset=..., kwargs=...)`` builds the network ``arch`` names
(a built-in of ``contract.catalog.MODELS``, an installed ``robustlab.models`` entry
point, ``torchvision:<name>`` or ``timm:<name>``, see ``sources``) for a dataset's input shape
and puts its normalisation in front.

Conventions shared with the attacks and the training loop:

- Inputs are images in [0, 1], shape ``(B, C, H, W)``. A dataset's normalisation is a
  ``Normalize`` module inside the model (``NormalizedModel``), so every eps is in pixel space.
  MNIST-like datasets have none (MadryLab's mnist_challenge feeds raw pixels), so those models
  are the bare networks: the ``linear`` model for binary MNIST *is* an ``nn.Linear`` whose
  ``weight`` (1, 784) and ``bias`` (1,) are the w and b of f(x) = w.x + b.
- A binary task (``num_classes == 2``, labels -1/+1) gets ONE output, the logit f(x); the
  prediction is sign(f(x)) and the loss softplus(-y f(x)). Otherwise K outputs (logits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from contract import catalog
from contract.datasets import DATASETS, DatasetInfo, Normalization
from workers.science.models.networks import (
    CIFAR_RESNET_STRIDES,
    CIFAR_RESNET_UNITS,
    CIFAR_RESNET_WIDTHS,
    LEAKINESS,
    CifarResNet,
    InputShape,
    LinearClassifier,
    MnistCNN,
    PreActResidualUnit,
    resnet50,
)
from workers.science.models.sources import RAW_INPUTS, ModelBuildError, build_network, builder

__all__ = [
    "CIFAR_RESNET_STRIDES", "CIFAR_RESNET_UNITS", "CIFAR_RESNET_WIDTHS", "LEAKINESS", "MODELS",
    "CifarResNet", "InputShape", "LinearClassifier", "MnistCNN", "ModelBuildError", "Normalize",
    "NormalizedModel", "PreActResidualUnit", "RAW_INPUTS", "build_model", "home_dataset",
    "inner_network", "output_size", "resnet50",
]

Builder = Callable[[int, InputShape], nn.Module]
"""(number of outputs, input shape) -> network on normalised inputs."""
MODELS: dict[str, Builder] = {name: builder(name) for name in catalog.MODELS}
"""The built-in builders by name: ``catalog.MODELS`` resolved (not a second list)."""


def output_size(num_classes: int) -> int:
    """One logit for a binary (-1/+1) task, one per class otherwise."""
    return 1 if num_classes == 2 else num_classes


class Normalize(nn.Module):
    """(x - mean) / std per channel; the statistics are buffers, saved with the weights."""

    mean: torch.Tensor  # (1, C, 1, 1)
    std: torch.Tensor  # (1, C, 1, 1)

    def __init__(self, normalization: Normalization) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(normalization.std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """A network behind its dataset's normalisation, so callers only ever see [0, 1] images."""

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) in [0, 1] -> (B, K)
        return self.net(self.normalize(x))


def inner_network(model: nn.Module) -> nn.Module:
    """The network behind the normalisation (the model itself when there is none)."""
    return model.net if isinstance(model, NormalizedModel) else model


def home_dataset(arch: str) -> str:
    """The dataset a built-in architecture is built for when no dataset is named."""
    return catalog.MODELS[arch].home_dataset


def build_model(arch: str, num_classes: int, *, dataset: str | DatasetInfo | None = None,
                kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A freshly initialised ``arch`` with ``output_size(num_classes)`` outputs.

    Args:
        arch: a name the catalog resolves (built-in, plugin, ``torchvision:``, ``timm:``).
        num_classes: 2 for the -1/+1 binary task (one logit), else the number of classes.
        dataset: the dataset giving the input shape and normalisation: a built-in name, or the
            ``DatasetInfo`` of any dataset (``workers.science.datasets.dataset_info``); default
            ``home_dataset(arch)`` for built-in archs (linear: binary_mnist, mnist_cnn: mnist,
            cifar_resnet: cifar10, resnet50: restricted_imagenet).
        kwargs: keyword arguments of the builder (``model.kwargs``).

    Returns:
        A module mapping ``(B, C, H, W)`` images in [0, 1] to ``(B, K)`` logits; a
        ``NormalizedModel`` when the dataset has a normalisation, else the bare network (also
        when the builder marked it ``RAW_INPUTS``: ``dm_wide_resnet``, ``normalization: none``).

    Raises:
        ModelBuildError: one line saying why (unknown arch, kwargs refused, timm missing).
    """
    try:
        catalog.check_arch(arch)
    except catalog.UnknownName as exc:
        raise ModelBuildError(str(exc)) from None
    if dataset is None:
        if arch not in catalog.MODELS:
            raise ModelBuildError(f"{arch!r} has no home dataset: name the dataset to build it for")
        dataset = home_dataset(arch)
    info = DATASETS[dataset] if isinstance(dataset, str) else dataset
    net = build_network(arch, output_size(num_classes), info.input_shape, kwargs)
    if info.normalization is None or getattr(net, RAW_INPUTS, False):
        return net  # no normalisation, or the network takes [0, 1] images itself (sources.py)
    return NormalizedModel(Normalize(info.normalization), net)
