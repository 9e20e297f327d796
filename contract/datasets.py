"""The datasets robustlab knows, with their static facts: classes, shapes, normalisation, radii.

Torch-free. ``contract.specs.data`` takes the names from here; the science
(``workers.science.datasets``) takes the facts and the module that loads each one.

Adding a built-in dataset: one module ``workers/science/datasets/<module>.py`` with
``load(cfg, root, *, train)``, ``files(cfg, root)`` and ``info(cfg, root)`` (copy ``mnist.py``),
plus one ``DatasetInfo`` entry in ``DATASETS`` naming that module. A lab's own dataset needs no
edit of robustlab: an entry point in the group ``robustlab.datasets``
(``contract.catalog.DATASET_GROUP``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Normalization:
    """Per-channel statistics that the model subtracts and divides by (inputs stay in [0, 1])."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the rest of the code needs to know about one dataset, without loading it.

    Built-ins are listed in ``DATASETS``; for ``image_folder``, ``npz`` and plugins the science
    computes one from the data (``workers.science.datasets.dataset_info``).
    """

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
    module: str = ""
    """Module of ``workers.science.datasets`` that loads it (``load``, ``files``, ``info``)."""
    image: bool = True
    """Whether inputs are images (pictures, crops and flips make sense)."""
    table2: Mapping[str, float] = field(default_factory=dict)
    """The paper's Table 2: eps of adversarial training and evaluation per norm (pixel space)."""
    large_eps: Mapping[str, float] = field(default_factory=dict)
    """The paper's Table 3: radii of the large-eps examples per norm (pixel space)."""
    how_to_get: str = ""
    """The fix named when its files are missing."""


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset read from a user's own files (``image_folder``, ``npz``): facts come from them."""

    name: str
    title: str
    module: str
    description: str


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

MNIST_TABLE2 = {"linf": 0.3, "l2": 1.5}
MNIST_TABLE3 = {"linf": 0.3, "l2": 4.0}
"""Table 3 lists MNIST only; binary MNIST and Fashion-MNIST share its pixel scale and size."""
_FETCH = "run `robustlab data fetch {}` (or set dataset.root)"

DATASETS: dict[str, DatasetInfo] = {
    "binary_mnist": DatasetInfo(
        name="binary_mnist", title="MNIST", num_classes=2, input_shape=(1, 28, 28),
        class_names=("5", "7"), normalization=None, default_arch="linear", augment=False,
        root_name="mnist", files=_idx_files("MNIST"), fetchable=True, module="mnist",
        table2={"linf": 0.2}, large_eps=MNIST_TABLE3, how_to_get=_FETCH.format("mnist"),
    ),
    "mnist": DatasetInfo(
        name="mnist", title="MNIST", num_classes=10, input_shape=(1, 28, 28),
        class_names=MNIST_CLASSES, normalization=None, default_arch="mnist_cnn", augment=False,
        root_name="mnist", files=_idx_files("MNIST"), fetchable=True, module="mnist",
        table2=MNIST_TABLE2, large_eps=MNIST_TABLE3, how_to_get=_FETCH.format("mnist"),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", title="Fashion-MNIST", num_classes=10, input_shape=(1, 28, 28),
        class_names=FASHION_MNIST_CLASSES, normalization=None, default_arch="mnist_cnn",
        augment=False, root_name="fashion_mnist", files=_idx_files("FashionMNIST"),
        fetchable=True, module="mnist", table2=MNIST_TABLE2, large_eps=MNIST_TABLE3,
        how_to_get=_FETCH.format("fashion_mnist"),
    ),
    "cifar10": DatasetInfo(
        name="cifar10", title="CIFAR-10", num_classes=10, input_shape=(3, 32, 32),
        class_names=CIFAR10_CLASSES, normalization=CIFAR10_NORMALIZATION,
        default_arch="cifar_resnet", augment=True, root_name="cifar10",
        files=tuple(f"cifar-10-batches-py/{name}" for name in (*CIFAR10_BATCHES, "test_batch")),
        fetchable=False, module="cifar10",
        table2={"linf": 4 / 255, "l2": 80 / 255}, large_eps={"linf": 32 / 255, "l2": 1200 / 255},
        how_to_get="put torchvision's cifar-10-batches-py folder there, set dataset.download: "
        "true where the machine is online (or set dataset.root)",
    ),
    "restricted_imagenet": DatasetInfo(
        name="restricted_imagenet", title="ImageNet", num_classes=len(RESTRICTED_IMAGENET_RANGES),
        input_shape=(3, 224, 224), class_names=tuple(n for n, _, _ in RESTRICTED_IMAGENET_RANGES),
        normalization=IMAGENET_NORMALIZATION, default_arch="resnet50", augment=True,
        root_name="restricted_imagenet", files=(), fetchable=False, module="restricted_imagenet",
        table2={"linf": 0.005, "l2": 1.0}, large_eps={"linf": 0.25, "l2": 40.0},
        how_to_get="set dataset.root to an ImageNet tree with train/<wnid>/ and val/<wnid>/ folders",
    ),
}
"""The built-in datasets with fixed facts (the paper's)."""

DATASET_FORMATS: dict[str, DatasetFormat] = {
    "image_folder": DatasetFormat(
        "image_folder", "image folder", "image_folder",
        "root/train/<class>/* and root/test/<class>/* (or val/), torchvision's ImageFolder layout",
    ),
    "npz": DatasetFormat(
        "npz", "npz file", "npz",
        "one .npz file (dataset.root) with x_train, y_train, x_test, y_test (uint8 or [0, 1])",
    ),
}
"""Datasets made of a lab's own files; ``dataset.root`` names them."""

