"""Restricted ImageNet (the paper's Table 1): nine super-classes of ImageNet's wnid folders.

Layout: ``<root>/{train,val}/<wnid>/*.JPEG``; see ``imagenet_wnids`` for partial trees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torchvision import transforms

from contract.datasets import DATASETS, RESTRICTED_IMAGENET_RANGES, DatasetInfo
from contract.specs.data import DatasetConfig
from workers.science.datasets.common import int64, missing, proportional_order

INFO = DATASETS["restricted_imagenet"]
IMAGENET_CLASS_COUNT = 1000
IMAGENET_SPLITS = {True: "train", False: "val"}


def imagenet_wnids(root: Path, split_dir: Path) -> list[str]:
    """The 1000 ImageNet wnids in class-index order.

    The index of a class is the position of its wnid in the sorted list of the 1000 wnid
    folders (torchvision's ImageFolder and MadryLab's robustness count this way). A tree with
    all 1000 folders needs nothing more. A tree holding only some folders (a subset copied for
    a quick run, or the tiny trees the tests write) must list the 1000 wnids, one per line in
    index order, in ``<root>/classes.txt``; that file, when present, always wins.
    """
    listing = root / "classes.txt"
    if listing.is_file():
        wnids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        source = str(listing)
    else:
        wnids = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
        source = f"the class folders of {split_dir}"
    if len(wnids) != IMAGENET_CLASS_COUNT or len(set(wnids)) != IMAGENET_CLASS_COUNT:
        raise ValueError(
            f"expected {IMAGENET_CLASS_COUNT} distinct ImageNet wnids in {source}, found "
            f"{len(set(wnids))}: a partial tree needs {listing} listing all 1000 wnids in index order"
        )
    return wnids


def restricted_wnid_labels(wnids: Sequence[str]) -> dict[str, int]:
    """Maps each wnid inside a Table 1 range to its super-class label (0..8)."""
    return {
        wnids[index]: label
        for label, (_, first, last) in enumerate(RESTRICTED_IMAGENET_RANGES)
        for index in range(first, last + 1)
    }


def _imagenet_split_dir(root: Path, *, train: bool) -> Path:
    split_dir = root / IMAGENET_SPLITS[train]
    if not split_dir.is_dir():
        raise missing(INFO, split_dir)
    return split_dir


def _present_restricted_folders(root: Path, split_dir: Path) -> dict[str, int]:
    labels = restricted_wnid_labels(imagenet_wnids(root, split_dir))
    present = {wnid: label for wnid, label in labels.items() if (split_dir / wnid).is_dir()}
    if not present:
        raise missing(INFO, split_dir / "<wnid of a Table 1 class>")
    return present


class RestrictedImageNetFolder(torchvision.datasets.ImageFolder):
    """ImageFolder over the super-class folders only, each labelled with its Table 1 range.

    ``classes`` are the nine super-class names; ``class_to_idx`` maps wnids to their labels.
    Samples are put in ``proportional_order``, so a ``train_subset`` prefix holds every
    super-class rather than dogs only (the folders sort dogs first). Empty wnid folders are
    allowed (a partial tree may hold all 1000 folders and fill only some).
    """

    samples: list[tuple[str, int]]  # (image path, super-class label)

    def __init__(self, root: Path, split_dir: Path, transform: Callable[[Any], Any]) -> None:
        self._wnid_labels = _present_restricted_folders(root, split_dir)
        super().__init__(str(split_dir), transform=transform, target_transform=int64, allow_empty=True)
        if not self.samples:
            raise missing(INFO, split_dir / "<wnid>/*.JPEG")
        order = proportional_order([target for _, target in self.samples])
        self.samples = [self.samples[i] for i in order]
        self.imgs = self.samples
        self.targets = [target for _, target in self.samples]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return [name for name, _, _ in RESTRICTED_IMAGENET_RANGES], dict(self._wnid_labels)


def _imagenet_transform(*, augment: bool) -> Callable[[Any], torch.Tensor]:
    """Random resized crop 224 + flip for training, resize 256 / center crop 224 otherwise."""
    if augment:
        steps: list[Any] = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(256), transforms.CenterCrop(224)]
    return transforms.Compose([*steps, transforms.ToTensor()])


def info(cfg: DatasetConfig, root: Path) -> DatasetInfo:
    """The catalog's facts: nine super-classes, 224x224 RGB, ImageNet's normalisation."""
    return INFO


def load(cfg: DatasetConfig, root: Path, *, train: bool, augment: bool) -> RestrictedImageNetFolder:
    """One split: ``train/`` or ``val/``, random resized crops and flips when augmented."""
    split_dir = _imagenet_split_dir(root, train=train)
    return RestrictedImageNetFolder(root, split_dir, _imagenet_transform(augment=augment))


def files(cfg: DatasetConfig, root: Path) -> list[Path]:
    """The images of the nine super-classes (train and val) and ``classes.txt`` when present."""
    extensions = torchvision.datasets.folder.IMG_EXTENSIONS
    files = [root / "classes.txt"] if (root / "classes.txt").is_file() else []
    for train in (True, False):
        split_dir = _imagenet_split_dir(root, train=train)
        for wnid in _present_restricted_folders(root, split_dir):
            files.extend(
                path for path in (split_dir / wnid).rglob("*")
                if path.is_file() and path.suffix.lower() in extensions
            )
    return sorted(files)


