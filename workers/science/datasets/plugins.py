"""Datasets from installed plugins: entry points in the group ``robustlab.datasets``.

A plugin distribution declares ``name = "package.module:loader"``; robustlab calls
``loader(root, train=..., **dataset.kwargs)`` and expects a ``Dataset`` of ``(x, y)`` items
(``x`` a float tensor (C, H, W) in [0, 1], ``y`` a class index) with a ``classes`` attribute
(the class names in label order, as torchvision's datasets have). ``root`` is
``dataset.root``, or ``ROBUSTLAB_DATA_DIR/<name>``. Only registered entry points are loaded:
the name in a spec selects one, it is never imported as a path.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import Dataset

from contract.catalog import DATASET_GROUP
from contract.datasets import DatasetInfo, Normalization
from contract.specs.data import DatasetConfig
from workers.science.datasets.common import MalformedDataError, walk_files


def loader(name: str) -> Callable[..., Dataset]:
    """The registered loader of ``name`` (imports the plugin's module, nothing else)."""
    found = [ep for ep in importlib.metadata.entry_points(group=DATASET_GROUP) if ep.name == name]
    if not found:
        raise KeyError(f"no installed dataset plugin {name!r} (entry-point group {DATASET_GROUP})")
    return cast(Callable[..., Dataset], found[0].load())


def _split(cfg: DatasetConfig, root: Path, *, train: bool) -> Dataset:
    data = loader(cfg.name)(root, train=train, **cfg.kwargs)
    if not isinstance(data, Dataset) or not isinstance(data, Sized):
        raise MalformedDataError(f"dataset plugin {cfg.name!r} returned {type(data).__name__}, "
                                 "not a sized torch Dataset")
    return data


def info(cfg: DatasetConfig, root: Path) -> DatasetInfo:
    """Facts from the plugin's test split: its ``classes`` and its first item's shape."""
    data = _split(cfg, root, train=False)
    classes: Any = getattr(data, "classes", None)
    if classes is None:
        raise MalformedDataError(f"dataset plugin {cfg.name!r}: its dataset has no 'classes' "
                                 "attribute (the class names in label order)")
    x, _ = data[0]
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise MalformedDataError(f"dataset plugin {cfg.name!r}: items must be (x (C, H, W) tensor, "
                                 f"y), got x of type {type(x).__name__}")
    normalization = None
    if cfg.normalization is not None:
        normalization = Normalization(tuple(cfg.normalization.mean), tuple(cfg.normalization.std))
    return DatasetInfo(
        name=cfg.name, title=f"plugin dataset {cfg.name}", num_classes=len(classes),
        input_shape=(int(x.shape[0]), int(x.shape[1]), int(x.shape[2])),
        class_names=tuple(str(c) for c in classes), normalization=normalization,
        default_arch="", augment=False, root_name=cfg.name, files=(), fetchable=False,
        module="plugins", how_to_get=f"the plugin {cfg.name!r} loads it from {root}",
    )


def load(cfg: DatasetConfig, root: Path, *, train: bool, augment: bool) -> Dataset:
    """One split from the plugin (augmentation is the plugin's business)."""
    return _split(cfg, root, train=train)


def files(cfg: DatasetConfig, root: Path) -> list[Path]:
    """The files under ``root`` when it exists (the data hash covers them), else none."""
    return walk_files(root) if root.is_dir() else ([root] if root.is_file() else [])
