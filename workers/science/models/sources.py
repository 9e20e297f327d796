"""Where a network comes from: a built-in, a plugin's entry point, torchvision or timm.

Every source is a builder ``(num_outputs, input_shape, **kwargs) -> nn.Module`` on normalised
inputs (or on [0, 1] images, when it marks the network with ``RAW_INPUTS``). Only names the
catalog resolves are ever imported: a built-in's ``module:attribute`` written in
``contract.catalog.MODELS``, an installed distribution's entry point in the group
``robustlab.models``, or a model registered with torchvision or timm. A dotted path written in
a spec is never imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import torchvision
from torch import nn

from contract import catalog
from contract.errors import Refusal
from workers.science.models import pretrained

InputShape = tuple[int, int, int]
Builder = Callable[..., nn.Module]
"""(number of outputs, input shape, **kwargs) -> network on normalised inputs."""


RAW_INPUTS = "takes_raw_inputs"
"""A builder sets this attribute true on a network that takes [0, 1] images as they are: one
that normalises inside itself (``dm_wide_resnet``) or was built with ``normalization: none``.
``build_model`` then puts no dataset normalisation in front of it."""


class ModelBuildError(ValueError, Refusal):
    """A model that cannot be built as asked; the message is one line saying why."""


def _builtin(name: str) -> Builder:
    module, attribute = catalog.MODELS[name].builder.split(":")
    return cast(Builder, getattr(importlib.import_module(module), attribute))


def _plugin(name: str) -> Builder:
    found = [ep for ep in importlib.metadata.entry_points(group=catalog.MODEL_GROUP)
             if ep.name == name]
    if not found:
        raise ModelBuildError(str(catalog.UnknownName(_unknown(name))))
    return cast(Builder, found[0].load())


def _unknown(name: str) -> str:
    try:
        catalog.check_arch(name)
    except catalog.UnknownName as exc:
        return str(exc)
    return f"unknown arch {name!r}"


def _torchvision(name: str) -> Builder:
    def build(num_outputs: int, input_shape: InputShape, **kwargs: Any) -> nn.Module:
        kwargs.setdefault("num_classes", num_outputs)
        if input_shape[0] != 3:
            raise ModelBuildError(f"torchvision:{name} takes RGB images; the data has "
                                  f"{input_shape[0]} channel(s) (image_folder: channels: 3)")
        if kwargs.get("weights") is not None:  # robustlab's own loader: hash checked, no pickle
            try:
                return pretrained.build(name, kwargs.pop("weights"), kwargs)
            except pretrained.PretrainedWeightsError as exc:
                raise ModelBuildError(str(exc)) from None
        return torchvision.models.get_model(name, **kwargs)
    return build


def _timm(name: str) -> Builder:
    if not catalog.timm_installed():
        raise ModelBuildError(f"timm:{name} needs timm, which is not installed: "
                              f"{catalog.TIMM_INSTALL_HINT}")
    timm = importlib.import_module("timm")  # optional extra robustlab[timm]

    def build(num_outputs: int, input_shape: InputShape, **kwargs: Any) -> nn.Module:
        kwargs.setdefault("num_classes", num_outputs)
        kwargs.setdefault("in_chans", input_shape[0])
        return cast(nn.Module, timm.create_model(name, **kwargs))
    return build


def builder(arch: str) -> Builder:
    """The builder ``model.arch`` names (one-line ``ModelBuildError`` if there is none)."""
    if arch in catalog.MODELS:
        return _builtin(arch)
    if arch.startswith(catalog.TORCHVISION_PREFIX):
        return _torchvision(arch[len(catalog.TORCHVISION_PREFIX):])
    if arch.startswith(catalog.TIMM_PREFIX):
        return _timm(arch[len(catalog.TIMM_PREFIX):])
    return _plugin(arch)


def build_network(arch: str, num_outputs: int, input_shape: InputShape,
                  kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """``builder(arch)(num_outputs, input_shape, **kwargs)``, checked to be an ``nn.Module``.

    A builder refusing the kwargs (``TypeError``) or failing is one line naming the arch.
    """
    make = builder(arch)
    try:
        net = make(num_outputs, input_shape, **dict(kwargs or {}))
    except ModelBuildError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelBuildError(f"cannot build {arch!r} with kwargs {dict(kwargs or {})} for "
                              f"{num_outputs} outputs and input {input_shape}: {first_line}") from exc
    if not isinstance(net, nn.Module):
        raise ModelBuildError(f"the builder of {arch!r} returned {type(net).__name__}, "
                              "not a torch.nn.Module")
    return net


def flat_size(input_shape: InputShape) -> int:
    """Number of input values of one example (C * H * W)."""
    return math.prod(input_shape)
