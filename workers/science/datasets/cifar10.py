"""CIFAR-10 from torchvision's on-disk python pickles: ``<root>/cifar-10-batches-py/``.

Read directly rather than through ``torchvision.datasets.CIFAR10``, which insists on the md5
sums of the full files: the format is the same, and small files in it load too.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from contract.datasets import CIFAR10_BATCHES, DATASETS, DatasetInfo
from contract.specs.data import DatasetConfig
from workers.science.datasets.common import ImageTensorDataset, crop_augmentation, require_files
from workers.science.safe_pickle import load_cifar_batch

INFO = DATASETS["cifar10"]


def download(name: str, root: Path) -> None:
    """Let torchvision download CIFAR-10 into ``root`` (needs internet; a no-op when present)."""
    root.mkdir(parents=True, exist_ok=True)
    torchvision.datasets.CIFAR10(str(root), train=True, download=True)


def info(cfg: DatasetConfig, root: Path) -> DatasetInfo:
    """The catalog's facts: nothing about CIFAR-10 depends on the files."""
    return INFO


def files(cfg: DatasetConfig, root: Path) -> list[Path]:
    """The six batch files; ``MissingDataError`` for the first one absent."""
    return sorted(require_files(INFO, root))


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``cifar-10-batches-py`` pickle: ``data`` (N, 3072) uint8 rows, ``labels`` (N,).

    Read by the restricted unpickler: ``dataset.root`` may point anywhere, and a plain
    ``pickle.load`` would run whatever code the file holds.
    """
    entry = load_cifar_batch(path)
    images = torch.as_tensor(entry["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32)
    return images, torch.as_tensor(entry["labels"], dtype=torch.int64)


def load(cfg: DatasetConfig, root: Path, *, train: bool, augment: bool) -> ImageTensorDataset:
    """One split; augmentation is a random crop 32 with 4 pixels of zero padding and a flip
    (as in MadryLab's robustness library)."""
    if cfg.download and not all((root / name).is_file() for name in INFO.files):
        download(cfg.name, root)
    require_files(INFO, root)
    folder = root / "cifar-10-batches-py"
    batches = [read_batch(folder / name) for name in (CIFAR10_BATCHES if train else ("test_batch",))]
    data = ImageTensorDataset(torch.cat([images for images, _ in batches]),
                              torch.cat([labels for _, labels in batches]))
    if augment:
        data.transform = crop_augmentation(INFO.input_shape, padding=4, flip=True)
    return data
