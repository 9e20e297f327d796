"""The dataset registry: what each dataset is, where its files live, how to load and hash them.

``DATASETS`` is the one list of dataset names (``service.specs.models.DatasetName`` must equal
its keys; a test checks). Every loader returns a ``torch.utils.data.Dataset`` whose items are
``(x, y)``: ``x`` a float tensor ``(C, H, W)`` in [0, 1] (normalisation lives inside the model,
see ``workers.science.models``) and ``y`` an int64 scalar tensor. ``binary_mnist`` labels are
-1 ("5") and +1 ("7"); every other dataset uses class indices 0..K-1.

On-disk formats are torchvision's own, so a tree that torchvision downloaded works unchanged:

- ``mnist`` / ``binary_mnist``: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (``binary_mnist`` shares ``mnist``'s root). ``fashion_mnist``: the same under ``FashionMNIST/raw``.
- ``cifar10``: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` pickles.
- ``restricted_imagenet``: ``<root>/{train,val}/<wnid>/*.JPEG`` (see ``imagenet_wnids``).

``data_fetch.fetch`` puts MNIST and Fashion-MNIST there without internet access.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.utils.data import Dataset, Subset
from torchvision import transforms
from torchvision.transforms import v2

from service.specs.models import DatasetConfig
from workers.science.safe_pickle import load_cifar_batch

# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Normalization:
    """Per-channel statistics that the model subtracts and divides by (inputs stay in [0, 1])."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the rest of the code needs to know about one dataset, without loading it."""

    name: str
    title: str
    """Human name used in messages, e.g. 'MNIST'."""
    num_classes: int
    """2 for the binary task (labels -1/+1, models give one logit); K otherwise."""
    input_shape: tuple[int, int, int]
    """(C, H, W) of one model input, after the test-time transform."""
    class_names: tuple[str, ...]
    """Names in label order (binary_mnist: label -1 first, then +1)."""
    normalization: Normalization | None
    """None where the model sees raw [0, 1] pixels (MNIST-like, as in MadryLab mnist_challenge)."""
    default_arch: str
    augment: bool
    """Training augmentation unless ``DatasetConfig.augment`` says otherwise."""
    root_name: str
    """Directory under the data dir (binary_mnist shares mnist's)."""
    files: tuple[str, ...]
    """Files the data consists of, relative to the root; empty for image trees (walked instead)."""
    fetchable: bool
    """Whether ``robustlab data fetch`` can get it without internet access."""


def _idx_files(folder: str) -> tuple[str, ...]:
    return tuple(
        f"{folder}/raw/{split}-{kind}-ubyte"
        for split in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    )


MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
RESTRICTED_IMAGENET_RANGES: tuple[tuple[str, int, int], ...] = (
    ("dog", 151, 268),
    ("cat", 281, 285),
    ("frog", 30, 32),
    ("turtle", 33, 37),
    ("bird", 80, 100),
    ("primate", 365, 382),
    ("fish", 389, 397),
    ("crab", 118, 121),
    ("insect", 300, 319),
)
"""Table 1 of the paper: inclusive ImageNet class-index ranges, in label order (as MadryLab's
robustness library's ``RESTRICTED_IMAGNET_RANGES``)."""
BINARY_MNIST_DIGITS = (5, 7)
"""Digits kept by binary_mnist; the first becomes label -1, the second +1."""

CIFAR10_NORMALIZATION = Normalization(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

DATASETS: dict[str, DatasetInfo] = {
    "binary_mnist": DatasetInfo(
        name="binary_mnist", title="MNIST", num_classes=2, input_shape=(1, 28, 28),
        class_names=("5", "7"), normalization=None, default_arch="linear", augment=False,
        root_name="mnist", files=_idx_files("MNIST"), fetchable=True,
    ),
    "mnist": DatasetInfo(
        name="mnist", title="MNIST", num_classes=10, input_shape=(1, 28, 28),
        class_names=MNIST_CLASSES, normalization=None, default_arch="mnist_cnn", augment=False,
        root_name="mnist", files=_idx_files("MNIST"), fetchable=True,
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", title="Fashion-MNIST", num_classes=10, input_shape=(1, 28, 28),
        class_names=FASHION_MNIST_CLASSES, normalization=None, default_arch="mnist_cnn",
        augment=False, root_name="fashion_mnist", files=_idx_files("FashionMNIST"), fetchable=True,
    ),
    "cifar10": DatasetInfo(
        name="cifar10", title="CIFAR-10", num_classes=10, input_shape=(3, 32, 32),
        class_names=CIFAR10_CLASSES, normalization=CIFAR10_NORMALIZATION,
        default_arch="cifar_resnet", augment=True, root_name="cifar10",
        files=tuple(f"cifar-10-batches-py/{name}" for name in (*CIFAR10_BATCHES, "test_batch")),
        fetchable=False,
    ),
    "restricted_imagenet": DatasetInfo(
        name="restricted_imagenet", title="ImageNet", num_classes=len(RESTRICTED_IMAGENET_RANGES),
        input_shape=(3, 224, 224), class_names=tuple(n for n, _, _ in RESTRICTED_IMAGENET_RANGES),
        normalization=IMAGENET_NORMALIZATION, default_arch="resnet50", augment=True,
        root_name="restricted_imagenet", files=(), fetchable=False,
    ),
}


class MissingDataError(FileNotFoundError):
    """The dataset's files are not where the spec says; the message is one line with the fix."""


def dataset_root(cfg: DatasetConfig, data_dir: Path) -> Path:
    """``cfg.root`` when given, else ``data_dir/<root_name>`` (binary_mnist uses mnist's)."""
    if cfg.root is not None:
        return Path(cfg.root).expanduser()
    return Path(data_dir) / DATASETS[cfg.name].root_name


def _how_to_get(info: DatasetInfo) -> str:
    if info.fetchable:
        return f"run `robustlab data fetch {info.root_name}` (or set dataset.root)"
    if info.name == "cifar10":
        return (
            "put torchvision's cifar-10-batches-py folder there, set dataset.download: true "
            "where the machine is online (or set dataset.root)"
        )
    return "set dataset.root to an ImageNet tree with train/<wnid>/ and val/<wnid>/ folders"


def _missing(info: DatasetInfo, path: Path) -> MissingDataError:
    return MissingDataError(f"{info.title} not found at {path}: {_how_to_get(info)}")


def _require_files(info: DatasetInfo, root: Path) -> list[Path]:
    paths = [root / name for name in info.files]
    for path in paths:
        if not path.is_file():
            raise _missing(info, path)
    return paths


def data_files(cfg: DatasetConfig, data_dir: Path) -> list[Path]:
    """The files ``data_hash`` covers, sorted; raises ``MissingDataError`` when one is missing.

    For restricted_imagenet these are the images of the nine super-classes (train and val) and
    ``classes.txt`` when present, found by walking the tree.
    """
    info = DATASETS[cfg.name]
    root = dataset_root(cfg, data_dir)
    if info.name == "restricted_imagenet":
        return _imagenet_files(root)
    return sorted(_require_files(info, root))


# --------------------------------------------------------------------------- hashing

_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}
"""sha256 of file contents, keyed by (resolved path, size, mtime_ns): a file is read only once
per process unless it changes (worth it for ImageNet, harmless for MNIST)."""


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def data_hash(cfg: DatasetConfig, data_dir: Path) -> str:
    """sha256 over the data files' names (relative to the root) and contents.

    Relative names make the hash independent of where the data directory sits, so two machines
    holding the same files agree. It covers the files, not the subset or the labels derived
    from them (those are in the spec), so binary_mnist and mnist share a hash.
    """
    root = dataset_root(cfg, data_dir)
    digest = hashlib.sha256()
    for path in data_files(cfg, data_dir):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(_file_digest(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


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


def _augmentation(info: DatasetInfo) -> Callable[[torch.Tensor], torch.Tensor]:
    """Training augmentation on uint8 image tensors.

    CIFAR-10: random crop 32 with 4 pixels of zero padding and a horizontal flip (as in
    MadryLab's robustness library). MNIST-like: a random crop with 2 pixels of padding, no flip
    (a flipped digit is another shape); only used when a spec sets ``augment: true``.
    """
    _, height, width = info.input_shape
    if info.name == "cifar10":
        return v2.Compose([v2.RandomCrop((height, width), padding=4), v2.RandomHorizontalFlip()])
    return v2.RandomCrop((height, width), padding=2)


def _wants_augmentation(cfg: DatasetConfig, *, train: bool) -> bool:
    return train and (cfg.augment if cfg.augment is not None else DATASETS[cfg.name].augment)


# --------------------------------------------------------------------------- loaders

_TORCHVISION_CLASSES: dict[str, type[torchvision.datasets.VisionDataset]] = {
    "binary_mnist": torchvision.datasets.MNIST,
    "mnist": torchvision.datasets.MNIST,
    "fashion_mnist": torchvision.datasets.FashionMNIST,
    "cifar10": torchvision.datasets.CIFAR10,
}


def download_with_torchvision(name: str, root: Path) -> None:
    """Let torchvision download ``name`` into ``root`` (needs internet; a no-op when present)."""
    if name not in _TORCHVISION_CLASSES:
        raise MissingDataError(
            f"{DATASETS[name].title} cannot be downloaded automatically: "
            f"{_how_to_get(DATASETS[name])}"
        )
    root.mkdir(parents=True, exist_ok=True)
    _TORCHVISION_CLASSES[name](str(root), train=True, download=True)


def _mnist_like(cfg: DatasetConfig, root: Path, *, train: bool) -> ImageTensorDataset:
    """MNIST or Fashion-MNIST through torchvision's reader of the raw IDX files."""
    source = _TORCHVISION_CLASSES[cfg.name](str(root), train=train, download=False)
    images = source.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = source.targets
    if cfg.name == "binary_mnist":
        negative, positive = BINARY_MNIST_DIGITS
        keep = (labels == negative) | (labels == positive)
        images = images[keep]
        labels = torch.where(labels[keep] == positive, 1, -1)
    return ImageTensorDataset(images, labels)


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``cifar-10-batches-py`` pickle: ``data`` (N, 3072) uint8 rows, ``labels`` (N,).

    Read by the restricted unpickler: ``dataset.root`` may point anywhere, and a plain
    ``pickle.load`` would run whatever code the file holds.
    """
    entry = load_cifar_batch(path)
    images = torch.as_tensor(entry["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32)
    return images, torch.as_tensor(entry["labels"], dtype=torch.int64)


def _cifar10(root: Path, *, train: bool) -> ImageTensorDataset:
    """CIFAR-10 from torchvision's on-disk pickles.

    Read directly rather than through ``torchvision.datasets.CIFAR10``, which insists on the
    md5 sums of the full files: the format is the same, and small files in it load too.
    """
    folder = root / "cifar-10-batches-py"
    batches = [_read_cifar_batch(folder / name) for name in (CIFAR10_BATCHES if train else ("test_batch",))]
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    return ImageTensorDataset(images, labels)


# --------------------------------------------------------------------------- restricted ImageNet

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
        raise _missing(DATASETS["restricted_imagenet"], split_dir)
    return split_dir


def _present_restricted_folders(root: Path, split_dir: Path) -> dict[str, int]:
    labels = restricted_wnid_labels(imagenet_wnids(root, split_dir))
    present = {wnid: label for wnid, label in labels.items() if (split_dir / wnid).is_dir()}
    if not present:
        raise _missing(DATASETS["restricted_imagenet"], split_dir / "<wnid of a Table 1 class>")
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
        super().__init__(str(split_dir), transform=transform, target_transform=_int64, allow_empty=True)
        if not self.samples:
            raise _missing(DATASETS["restricted_imagenet"], split_dir / "<wnid>/*.JPEG")
        order = proportional_order([target for _, target in self.samples])
        self.samples = [self.samples[i] for i in order]
        self.imgs = self.samples
        self.targets = [target for _, target in self.samples]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return [name for name, _, _ in RESTRICTED_IMAGENET_RANGES], dict(self._wnid_labels)


def _int64(label: int) -> torch.Tensor:
    return torch.tensor(label, dtype=torch.int64)


def _imagenet_transform(*, augment: bool) -> Callable[[Any], torch.Tensor]:
    """Random resized crop 224 + flip for training, resize 256 / center crop 224 otherwise."""
    if augment:
        steps: list[Any] = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(256), transforms.CenterCrop(224)]
    return transforms.Compose([*steps, transforms.ToTensor()])


def _restricted_imagenet(cfg: DatasetConfig, root: Path, *, train: bool) -> RestrictedImageNetFolder:
    split_dir = _imagenet_split_dir(root, train=train)
    transform = _imagenet_transform(augment=_wants_augmentation(cfg, train=train))
    return RestrictedImageNetFolder(root, split_dir, transform)


def _imagenet_files(root: Path) -> list[Path]:
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


# --------------------------------------------------------------------------- entry point


def load_dataset(cfg: DatasetConfig, data_dir: Path, *, train: bool) -> Dataset:
    """The training or test split named by ``cfg``: items ``(x (C, H, W) in [0, 1], y int64)``.

    Downloads through torchvision first when ``cfg.download`` is set and files are missing;
    otherwise missing files raise ``MissingDataError`` naming the path and the fix. Subsets
    are the first N examples of the split (after binary_mnist's filtering). Tensor datasets
    (everything but ImageNet) are ``ImageTensorDataset``s, which offer ``tensors()``.
    """
    info = DATASETS[cfg.name]
    root = dataset_root(cfg, data_dir)
    subset = cfg.train_subset if train else cfg.test_subset
    if info.name == "restricted_imagenet":
        folder = _restricted_imagenet(cfg, root, train=train)
        return folder if subset is None else Subset(folder, range(min(subset, len(folder))))
    if cfg.download and not all((root / name).is_file() for name in info.files):
        download_with_torchvision(info.name, root)
    _require_files(info, root)
    data = _cifar10(root, train=train) if info.name == "cifar10" else _mnist_like(cfg, root, train=train)
    data = data.first(subset)
    if _wants_augmentation(cfg, train=train):
        data.transform = _augmentation(info)
    return data
