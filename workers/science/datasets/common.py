"""What every dataset loader shares: in-memory image tensors, errors, hashing, class order.

Every loader returns a ``torch.utils.data.Dataset`` whose items are ``(x, y)``: ``x`` a float
tensor ``(C, H, W)`` in [0, 1] (normalisation lives inside the model, see
``workers.science.models``) and ``y`` an int64 scalar tensor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from contract.datasets import DatasetInfo
from contract.errors import Refusal
from workers.science import data_hash


class MissingDataError(FileNotFoundError, Refusal):
    """The dataset's files are not where the spec says; the message is one line with the fix."""


class MalformedDataError(ValueError, Refusal):
    """The files are there but not in the expected layout; the message names what is wrong."""


def missing(info: DatasetInfo, path: Path) -> MissingDataError:
    """The error for a missing file or folder of a built-in dataset, with how to get it."""
    return MissingDataError(f"{info.title} not found at {path}: {info.how_to_get}")


def require_files(info: DatasetInfo, root: Path) -> list[Path]:
    """``info.files`` under ``root``; ``MissingDataError`` for the first one absent."""
    paths = [root / name for name in info.files]
    for path in paths:
        if not path.is_file():
            raise missing(info, path)
    return paths


# --------------------------------------------------------------------------- hashing

def file_digest(path: Path) -> str:
    """sha256 of one file's bytes, cached across runs by (path, size, mtime): see
    ``workers.science.data_hash`` (a run no longer reads the whole dataset again)."""
    return data_hash.file_digest(path)


def hash_files(root: Path, files: Sequence[Path]) -> str:
    """sha256 over the files' names relative to ``root`` and their contents.

    Relative names make the hash independent of where the data directory sits, so two machines
    holding the same files agree. A single-file dataset (npz) uses the file's parent as root.
    """
    digest = hashlib.sha256()
    for path, file_hash in zip(files, data_hash.file_digests(files), strict=True):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(file_hash.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def walk_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (hidden ones excluded), sorted."""
    return sorted(
        path for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


# --------------------------------------------------------------------------- tensor datasets


class ImageTensorDataset(Dataset):
    """Images held in memory as uint8 ``(N, C, H, W)``, served as float ``(C, H, W)`` in [0, 1].

    MNIST and CIFAR-10 are small enough to hold whole, which is much faster than decoding a
    PIL image per item. ``transform`` (augmentation) sees the uint8 image tensor.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images  # (N, C, H, W) uint8
        self.labels = labels.to(torch.int64)  # (N,)
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]  # (C, H, W) uint8
        if self.transform is not None:
            image = self.transform(image)
        return image.float().div_(255), self.labels[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All examples at once, without augmentation: x ``(N, C, H, W)`` in [0, 1], y ``(N,)``.

        For full-batch methods (the linear binary-MNIST experiments) and fast evaluation.
        """
        return self.images.float().div_(255), self.labels.clone()

    def first(self, n: int | None) -> ImageTensorDataset:
        """The first ``n`` examples (all when ``n`` is None), sharing storage."""
        if n is None:
            return self
        return ImageTensorDataset(self.images[:n], self.labels[:n], self.transform)


def proportional_order(labels: Sequence[int]) -> list[int]:
    """A deterministic order of ``range(len(labels))`` that spreads every class evenly.

    Example ``i`` of a class with ``n`` members sits at position ``(i + 0.5) / n`` of the
    sequence, so every prefix holds each class in about its overall proportion ("the first N
    examples" is then a fair subset) and the order within a class is kept.
    """
    counts: dict[int, int] = {}
    ranks: list[int] = []
    for label in labels:
        ranks.append(counts.get(label, 0))
        counts[label] = ranks[-1] + 1
    return sorted(
        range(len(labels)),
        key=lambda i: ((ranks[i] + 0.5) / counts[labels[i]], labels[i], ranks[i]),
    )


def crop_augmentation(input_shape: tuple[int, int, int], *, padding: int,
                      flip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """A random crop back to the input size after zero padding, optionally a horizontal flip."""
    _, height, width = input_shape
    crop = v2.RandomCrop((height, width), padding=padding)
    return v2.Compose([crop, v2.RandomHorizontalFlip()]) if flip else crop


def int64(label: int) -> torch.Tensor:
    """A class index as the int64 scalar tensor every loader's items carry."""
    return torch.tensor(label, dtype=torch.int64)
