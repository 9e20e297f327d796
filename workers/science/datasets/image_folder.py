"""A lab's own images: ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``val/``).

torchvision's ImageFolder layout: one folder per class, classes sorted as ImageFolder sorts
them (by folder name), the test split labelled with the training split's class indices.
``image_size`` resizes the shorter side and centre-crops a square; ``channels`` 1 reads grey,
3 (default) RGB. Two classes follow robustlab's binary convention (labels -1 for the first
class, +1 for the second, one logit), as binary_mnist does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from torchvision import transforms

from contract.datasets import DatasetInfo, Normalization
from contract.specs.data import DatasetConfig
from workers.science.datasets import folder_walk
from workers.science.datasets.common import (
    ImageTensorDataset,
    MalformedDataError,
    MissingDataError,
    crop_augmentation,
    proportional_order,
)
from workers.science.datasets.limits import RefusedData, max_classes

TEST_SPLITS = ("test", "val")
LAYOUT = "image_folder wants root/train/<class>/* and root/test/<class>/* (or val/)"
EXTENSIONS = torchvision.datasets.folder.IMG_EXTENSIONS


def split_dir(root: Path, *, train: bool) -> Path:
    """``root/train``, or ``root/test`` (``root/val`` when there is no test/); one-line errors."""
    if not root.is_dir():
        raise MissingDataError(f"image_folder root not found: {root} ({LAYOUT})")
    names = ("train",) if train else TEST_SPLITS
    for name in names:
        if (root / name).is_dir():
            return root / name
    wanted = "train/" if train else "test/ (or val/)"
    raise MissingDataError(f"{root} has no {wanted} folder ({LAYOUT})")


def class_names(folder: Path) -> list[str]:
    """Class folder names, sorted as ImageFolder sorts them; at least one, each with images.

    At most ``ROBUSTLAB_MAX_CLASSES``; a FIFO, socket, device or link loop is refused
    (``folder_walk``).
    """
    classes = folder_walk.subfolders(folder)
    if not classes:
        raise MalformedDataError(f"{folder} has no class folders ({LAYOUT})")
    if len(classes) > (limit := max_classes()):
        raise RefusedData(f"{folder} has {len(classes)} class folders, more than {limit} "
                          "(ROBUSTLAB_MAX_CLASSES)")
    for name in classes:
        if not folder_walk.has_file(folder / name, EXTENSIONS):
            raise MalformedDataError(f"{folder / name} has no images ({', '.join(EXTENSIONS)})")
    return classes


def checked_classes(root: Path) -> list[str]:
    """The training classes, after checking that the test split has no class they lack."""
    train_classes = class_names(split_dir(root, train=True))
    test_dir = split_dir(root, train=False)
    extra = sorted(set(class_names(test_dir)) - set(train_classes))
    if extra:
        raise MalformedDataError(f"{test_dir.name}/ has classes that train/ lacks: {', '.join(extra)}")
    return train_classes


def _pixels(cfg: DatasetConfig) -> Callable[[Image.Image], Image.Image]:
    """PIL image -> the mode the spec asks for ('L' for 1 channel, 'RGB' for 3).

    A partial of a module-level function, not a lambda: loader workers start by forkserver
    (``training.loader.WORKER_START``) and receive the dataset pickled.
    """
    return functools.partial(_convert, mode="L" if cfg.channels == 1 else "RGB")


def _convert(image: Image.Image, mode: str) -> Image.Image:
    return image.convert(mode)


def _transform(cfg: DatasetConfig, size: tuple[int, ...], *,
               augment: bool) -> Callable[[Any], torch.Tensor]:
    steps: list[Any] = [_pixels(cfg)]
    if cfg.image_size is not None:
        steps += [transforms.Resize(cfg.image_size), transforms.CenterCrop(cfg.image_size)]
    if augment:
        steps += [transforms.RandomCrop(size, padding=max(1, size[0] // 8)),
                  transforms.RandomHorizontalFlip()]
    return transforms.Compose([*steps, transforms.ToTensor()])


def _first_image(folder: Path) -> Path:
    return min(folder_walk.regular_files(folder, EXTENSIONS))


def info(cfg: DatasetConfig, root: Path) -> DatasetInfo:
    """Facts read off the folders: classes, input shape (from ``image_size`` or the first image)."""
    classes = checked_classes(root)
    channels = cfg.channels or 3
    if cfg.image_size is not None:
        height = width = cfg.image_size
    else:
        with folder_walk.open_image(_first_image(split_dir(root, train=True))) as image:
            width, height = image.size
    normalization = None
    if cfg.normalization is not None:
        if len(cfg.normalization.mean) != channels:
            raise MalformedDataError(f"normalization has {len(cfg.normalization.mean)} values per "
                                     f"statistic but the images have {channels} channels")
        normalization = Normalization(tuple(cfg.normalization.mean), tuple(cfg.normalization.std))
    return DatasetInfo(
        name="image_folder", title=f"image folder {root}", num_classes=len(classes),
        input_shape=(channels, height, width), class_names=tuple(classes),
        normalization=normalization, default_arch="", augment=False, root_name="",
        files=(), fetchable=False, module="image_folder",
        how_to_get=LAYOUT,
    )


class LabelledImageFolder(torchvision.datasets.ImageFolder):
    """ImageFolder with the training split's classes, a fair prefix order, and a size check.

    Samples are put in ``proportional_order`` so that a ``train_subset`` prefix holds every
    class. Every image must come out at ``input_shape`` (set ``image_size`` otherwise).
    """

    samples: list[tuple[str, int]]

    def __init__(self, folder: Path, classes: list[str], transform: Callable[[Any], torch.Tensor],
                 input_shape: tuple[int, int, int]) -> None:
        self._classes = classes
        self._binary = len(classes) == 2
        self.input_shape = input_shape
        super().__init__(str(folder), transform=transform, allow_empty=True,
                         loader=folder_walk.open_image)
        order = proportional_order([target for _, target in self.samples])
        self.samples = [self.samples[i] for i in order]
        self.imgs = self.samples
        self.targets = [target for _, target in self.samples]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        present = set(folder_walk.subfolders(Path(directory)))
        return self._classes, {name: i for i, name in enumerate(self._classes) if name in present}

    @staticmethod
    def make_dataset(directory: str | Path, class_to_idx: dict[str, int],
                     extensions: tuple[str, ...] | None = None,
                     is_valid_file: Callable[[str], bool] | None = None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        """torchvision's listing, through ``folder_walk``: regular files, each folder once."""
        entered: folder_walk.Entered = {}
        return [(str(path), class_to_idx[name]) for name in sorted(class_to_idx)
                for path in folder_walk.regular_files(Path(directory, name),
                                                      extensions or EXTENSIONS, entered)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = super().__getitem__(index)  # (C, H, W) in [0, 1], class index
        if tuple(image.shape) != self.input_shape:
            raise MalformedDataError(
                f"{self.samples[index][0]} is {tuple(image.shape)}, not {self.input_shape} like "
                "the first image: set dataset.image_size to resize every image")
        label = (1 if target == 1 else -1) if self._binary else target
        return image, torch.tensor(label, dtype=torch.int64)


IN_MEMORY_BYTES = 256 * 2**20
"""A split whose uint8 pixels fit in this is decoded once and held in memory (an
``ImageTensorDataset``: no decoding per epoch, no loader workers); larger ones stay lazy."""


def load(cfg: DatasetConfig, root: Path, *, train: bool,
         augment: bool) -> LabelledImageFolder | ImageTensorDataset:
    """One split, labelled with the training split's classes: in memory when small, else a
    lazily decoded ImageFolder."""
    facts = info(cfg, root)
    size = facts.input_shape[1:]
    folder = LabelledImageFolder(split_dir(root, train=train), list(facts.class_names),
                                 _transform(cfg, size, augment=False), facts.input_shape)
    if len(folder) * math.prod(facts.input_shape) > IN_MEMORY_BYTES:
        folder.transform = _transform(cfg, size, augment=augment)
        return folder
    items = [folder[i] for i in range(len(folder))]
    images = torch.stack([x for x, _ in items]).mul_(255).round_().to(torch.uint8)  # (N, C, H, W)
    data = ImageTensorDataset(images, torch.stack([y for _, y in items]))
    if augment:
        data.transform = crop_augmentation(facts.input_shape, padding=max(1, size[0] // 8),
                                           flip=True)
    return data


def files(cfg: DatasetConfig, root: Path) -> list[Path]:
    """Every image of both splits (what the data hash covers), sorted."""
    checked_classes(root)
    found: list[Path] = []
    for train in (True, False):
        found += folder_walk.regular_files(split_dir(root, train=train), EXTENSIONS)
    return sorted(found)
