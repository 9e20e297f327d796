"""A lab's own arrays: one ``.npz`` file with ``x_train, y_train, x_test, y_test``.

Images are uint8 (0..255) or floats in [0, 1], shaped ``(N, H, W)``, ``(N, H, W, C)`` or
``(N, C, H, W)`` with C 1 or 3. Labels are class indices 0..K-1; two classes follow
robustlab's binary convention (-1 for class 0, +1 for class 1; labels already -1/+1 are kept).
An optional ``classes`` array names the classes. Read with ``allow_pickle=False``: an npz
file can then hold only plain arrays, never code.
"""

from __future__ import annotations

import os
import stat as stat_module
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch.utils.data import Dataset

from contract.datasets import DatasetInfo, Normalization
from contract.specs.data import DatasetConfig
from workers.science.datasets import npz_headers
from workers.science.datasets.common import (
    ImageTensorDataset,
    MalformedDataError,
    MissingDataError,
    crop_augmentation,
)
from workers.science.datasets.limits import RefusedData, max_classes

KEYS = ("x_train", "y_train", "x_test", "y_test")
_ARRAYS: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}
"""Arrays per (file, size, mtime): ``info`` and both splits read the file once."""


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The four arrays (and ``classes`` if present), checked; one-line errors naming the file.

    Nothing is loaded before every array's header has been checked against the others and
    against ``ROBUSTLAB_MAX_DATASET_BYTES`` (``npz_headers``); only a regular file is opened
    (non-blocking, so a FIFO named like the file cannot hang the run), and only the arrays a
    dataset uses are read, with ``allow_pickle=False``.
    """
    if not path.is_file():
        if path.exists() and not path.is_dir():
            raise RefusedData(f"{path} is not a regular file: an npz dataset is a file "
                              "(refused without reading it)")
        raise MissingDataError(f"npz file not found: {path} (dataset.root names the .npz file)")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _ARRAYS:
        with _open_regular(path) as handle:
            arrays = _checked_load(path, handle)
        for split in ("train", "test"):
            arrays[f"x_{split}"] = _images(path, f"x_{split}", arrays[f"x_{split}"])
            arrays[f"y_{split}"] = _labels(path, f"y_{split}", arrays[f"y_{split}"],
                                           len(arrays[f"x_{split}"]))
        if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
            raise MalformedDataError(f"{path}: x_train images are {arrays['x_train'].shape[1:]} "
                                     f"but x_test images are {arrays['x_test'].shape[1:]}")
        _check_label_values(path, arrays)
        _ARRAYS[key] = arrays
    return _ARRAYS[key]


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (checked on the open descriptor)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise MalformedDataError(f"{path} is not a readable .npz file ({exc.strerror})") from None
    if not stat_module.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RefusedData(f"{path} is not a regular file: an npz dataset is a file "
                          "(refused without reading it)")
    return os.fdopen(fd, "rb")


def _checked_load(path: Path, handle: BinaryIO) -> dict[str, np.ndarray]:
    """Headers first (``npz_headers.check_headers``), then the arrays a dataset uses."""
    with npz_headers.open_archive(path, handle) as archive:
        names = npz_headers.array_names(archive)
        absent = [name for name in KEYS if name not in names]
        if absent:
            raise MalformedDataError(f"{path} lacks {', '.join(absent)} (an npz dataset needs "
                                     f"{', '.join(KEYS)}; it has {', '.join(names) or 'nothing'})")
        wanted = [*KEYS, *(["classes"] if "classes" in names else [])]
        headers = {name: npz_headers.read_header(path, archive, name) for name in wanted}
    npz_headers.check_headers(path, headers)
    handle.seek(0)
    try:
        with np.load(handle, allow_pickle=False) as archive:
            return {name: archive[name] for name in wanted}
    except npz_headers.ZIP_ERRORS as exc:  # a member damaged past its header
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MalformedDataError(f"{path} is not a readable .npz file ({first})") from None


def _check_label_values(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Labels 0..K-1 (or -1/+1) with K at most ``ROBUSTLAB_MAX_CLASSES``, before any model."""
    limit = max_classes()
    for name in ("y_train", "y_test"):
        labels = arrays[name]
        if labels.size and int(labels.max()) >= limit:
            raise RefusedData(f"{path}: {name} has label {int(labels.max())}, but labels are "
                              f"0..K-1 with at most {limit} classes (ROBUSTLAB_MAX_CLASSES)")
    if not (arrays["y_train"].size or arrays["y_test"].size):
        raise MalformedDataError(f"{path}: y_train and y_test hold no labels")


def _images(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    """``x`` as (N, C, H, W), uint8 or float32 in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise MalformedDataError(f"{path}: {name} has shape {x.shape}; images are (N, H, W), "
                                 "(N, H, W, C) or (N, C, H, W) with C 1 or 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise MalformedDataError(f"{path}: {name} is {x.dtype}; images are uint8 or floats in [0, 1]")
    if x.size and not np.isfinite(x).all():
        raise MalformedDataError(f"{path}: {name} holds NaN or infinite values; float images "
                                 "must lie in [0, 1]")
    if x.size and (float(x.min()) < 0 or float(x.max()) > 1):
        raise MalformedDataError(f"{path}: {name} has values in [{x.min():.4g}, {x.max():.4g}]; "
                                 "float images must lie in [0, 1] (or store uint8)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(path: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise MalformedDataError(f"{path}: {name} must be {n} integer labels, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _class_count(path: Path, arrays: dict[str, np.ndarray]) -> tuple[int, bool]:
    """(K, labels already -1/+1)."""
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    values = set(np.unique(labels).tolist())
    if values <= {-1, 1} and -1 in values:
        return 2, True
    if min(values) < 0:
        raise MalformedDataError(f"{path}: labels must be 0..K-1 (or -1/+1), found {min(values)}")
    return int(max(values)) + 1, False


def info(cfg: DatasetConfig, root: Path) -> DatasetInfo:
    """Facts read off the arrays: number of classes, input shape, class names if stored."""
    arrays = read_arrays(root)
    num_classes, _ = _class_count(root, arrays)
    shape = tuple(int(v) for v in arrays["x_train"].shape[1:])
    names = tuple(str(v) for v in arrays["classes"]) if "classes" in arrays else tuple(
        str(i) for i in range(num_classes))
    if len(names) != num_classes:
        raise MalformedDataError(f"{root}: classes names {len(names)} classes, labels {num_classes}")
    normalization = None
    if cfg.normalization is not None:
        if len(cfg.normalization.mean) != shape[0]:
            raise MalformedDataError(f"normalization has {len(cfg.normalization.mean)} values per "
                                     f"statistic but the images have {shape[0]} channels")
        normalization = Normalization(tuple(cfg.normalization.mean), tuple(cfg.normalization.std))
    return DatasetInfo(
        name="npz", title=f"npz file {root}", num_classes=num_classes,
        input_shape=(shape[0], shape[1], shape[2]), class_names=names,
        normalization=normalization, default_arch="", augment=False, root_name="", files=(),
        fetchable=False, module="npz", how_to_get="dataset.root names the .npz file",
    )


class FloatImageDataset(Dataset):
    """Float images in [0, 1] held in memory, (N, C, H, W): ``ImageTensorDataset``'s float twin."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None) -> None:  # type: ignore[no-untyped-def]
        self.images = images  # (N, C, H, W) float32
        self.labels = labels  # (N,) int64
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images.clone(), self.labels.clone()

    def first(self, n: int | None) -> FloatImageDataset:
        if n is None:
            return self
        return FloatImageDataset(self.images[:n], self.labels[:n], self.transform)


def load(cfg: DatasetConfig, root: Path, *, train: bool, augment: bool) -> Dataset:
    """One split in memory; augmentation (when asked) is a random crop after padding and a flip."""
    arrays = read_arrays(root)
    split = "train" if train else "test"
    _, signed = _class_count(root, arrays)
    num_classes = info(cfg, root).num_classes
    labels = torch.from_numpy(arrays[f"y_{split}"])
    if num_classes == 2 and not signed:
        labels = torch.where(labels == 1, 1, -1)
    images = torch.from_numpy(arrays[f"x_{split}"])
    data: ImageTensorDataset | FloatImageDataset
    if images.dtype == torch.uint8:
        data = ImageTensorDataset(images, labels)
    else:
        data = FloatImageDataset(images, labels)
    if augment:
        shape = (images.shape[1], images.shape[2], images.shape[3])
        data.transform = crop_augmentation(shape, padding=max(1, shape[1] // 8), flip=True)
    return data


def files(cfg: DatasetConfig, root: Path) -> list[Path]:
    """The one file (checked readable)."""
    read_arrays(root)
    return [root]
