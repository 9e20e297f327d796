"""The catalog: every name robustlab knows, with its static facts, in one torch-free module.

Models, datasets, attacks, norms, training methods and experiment kinds are listed here once.
The spec models (``service.specs.models``) take their allowed values and error messages from
it; the science (``workers.science``) takes its facts (number of classes, input shape,
normalisation, the paper's radii) and the module that implements each name. Nothing here
imports torch, so the CLI, the dashboard and ``robustlab validate`` stay fast.

Open registries, closed imports: besides the built-ins below, installed distributions add
models and datasets through entry points (``robustlab.models``, ``robustlab.datasets``, see
``model_plugins`` / ``dataset_plugins``), and ``torchvision:<name>`` / ``timm:<name>`` name
models of those libraries. Only installed, registered code is ever imported; a dotted path
written in a spec is never imported (a spec uploaded to the dashboard would run any code).

How to add a built-in
---------------------
- **A dataset**: one module ``workers/science/datasets/<module>.py`` with ``load(cfg, root, *,
  train)``, ``files(cfg, root)`` and ``info(cfg, root)`` (copy ``mnist.py``), plus one
  ``DatasetInfo`` entry in ``DATASETS`` naming that module. Nothing else changes: the spec
  accepts the name, ``load_dataset`` dispatches on ``DatasetInfo.module``.
- **A model**: a builder ``(num_outputs, input_shape, **kwargs) -> nn.Module`` on normalised
  inputs (in ``workers/science/models/networks.py`` or a module of its own) plus one
  ``ModelInfo`` entry in ``MODELS`` naming it as ``"module:attribute"``.
- **An attack kind**: one module ``workers/science/attacks/<kind>.py`` plus one ``AttackInfo``
  entry in ``ATTACKS``; its parameters are a ``*Attack`` spec class with ``kind:
  Literal["<kind>"]`` in the ``Attack`` union of ``service/specs/models.py`` (the spec module
  checks at import that the union and ``ATTACKS`` name the same kinds).
- **A training method**: one module ``workers/science/training/<method>.py``, named in
  ``workers/science/training/methods.py``, plus one ``TrainingMethodInfo`` entry in
  ``TRAINING_METHODS``; ``adversary.method`` accepts exactly the names listed there.
- **An experiment kind**: one module ``workers/science/experiments/<kind>.py`` with ``run(spec,
  ctx)``, one ``ExperimentKindInfo`` entry in ``EXPERIMENT_KINDS`` and its ``*Spec`` class in
  ``AnySpec`` (checked at import like attacks).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

MODEL_GROUP = "robustlab.models"
"""Entry-point group of model builders: ``name = "package.module:builder"``."""
DATASET_GROUP = "robustlab.datasets"
"""Entry-point group of dataset loaders: ``name = "package.module:loader"``."""
TORCHVISION_PREFIX = "torchvision:"
TIMM_PREFIX = "timm:"
TIMM_INSTALL_HINT = "pip install 'robustlab[timm]'"
HOW_TO_REGISTER = (
    "register your own with an entry point in the group '{group}' of an installed package "
    "(README: 'Your own models and data')"
)

# --------------------------------------------------------------------------- norms


@dataclass(frozen=True)
class NormInfo:
    """A threat model's norm; ``workers.science.threat_models.THREAT_MODELS`` implements it."""

    name: str
    title: str


NORMS: dict[str, NormInfo] = {
    "linf": NormInfo("linf", "l_inf"),
    "l2": NormInfo("l2", "l_2"),
}

# --------------------------------------------------------------------------- datasets


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

# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelInfo:
    """A built-in architecture: where its builder is and which dataset it was made for."""

    name: str
    title: str
    builder: str
    """``module:attribute`` of a callable ``(num_outputs, input_shape, **kwargs) -> nn.Module``."""
    home_dataset: str
    """Dataset whose input shape and normalisation it gets when none is named."""


_NETWORKS = "workers.science.models.networks"
MODELS: dict[str, ModelInfo] = {
    "linear": ModelInfo("linear", "linear classifier", f"{_NETWORKS}:LinearClassifier",
                        "binary_mnist"),
    "mnist_cnn": ModelInfo("mnist_cnn", "mnist_challenge CNN", f"{_NETWORKS}:MnistCNN", "mnist"),
    "cifar_resnet": ModelInfo("cifar_resnet", "cifar10_challenge ResNet",
                              f"{_NETWORKS}:CifarResNet", "cifar10"),
    "resnet50": ModelInfo("resnet50", "ResNet-50", f"{_NETWORKS}:resnet50", "restricted_imagenet"),
}
"""The built-in architectures (the paper's four)."""

# --------------------------------------------------------------------------- attacks, training


@dataclass(frozen=True)
class AttackInfo:
    """An attack kind of ``evaluation.attacks``: its norms and the module implementing it."""

    name: str
    title: str
    norms: tuple[str, ...]
    module: str
    """Module under ``workers.science.attacks``."""


ATTACKS: dict[str, AttackInfo] = {
    "pgd": AttackInfo("pgd", "PGD (Madry et al. 2018)", ("linf", "l2"), "pgd"),
    "fgsm": AttackInfo("fgsm", "FGSM (Goodfellow et al. 2015)", ("linf",), "fgsm"),
    "exact_linear": AttackInfo("exact_linear", "exact worst case of a linear model",
                               ("linf", "l2"), "linear"),
    "apgd": AttackInfo("apgd", "APGD (Croce & Hein 2020)", ("linf", "l2"), "apgd"),
    "fab": AttackInfo("fab", "FAB (Croce & Hein 2020)", ("linf", "l2"), "fab"),
    "square": AttackInfo("square", "Square Attack (Andriushchenko et al. 2020)", ("linf", "l2"),
                         "square"),
    "autoattack": AttackInfo("autoattack", "AutoAttack (Croce & Hein 2020)", ("linf", "l2"),
                             "autoattack"),
}


@dataclass(frozen=True)
class TrainingMethodInfo:
    """A training method of ``adversary.method``."""

    name: str
    title: str
    module: str
    """Module under ``workers.science`` implementing it."""


TRAINING_METHODS: dict[str, TrainingMethodInfo] = {
    "pgd": TrainingMethodInfo("pgd", "PGD adversarial training (Madry et al. 2018); eps 0 is "
                              "standard training", "training.pgd"),
    "trades": TrainingMethodInfo("trades", "TRADES (Zhang et al. 2019): CE + beta * KL to the "
                                 "worst point of the ball", "training.trades"),
    "fgsm_rs": TrainingMethodInfo("fgsm_rs", "fast adversarial training (Wong et al. 2020): FGSM "
                                  "from a random start", "training.fgsm_rs"),
}


@dataclass(frozen=True)
class ExperimentKindInfo:
    """A spec ``kind``: ``workers.science.experiments.<module>.run(spec, ctx)`` runs it."""

    name: str
    title: str
    module: str


EXPERIMENT_KINDS: dict[str, ExperimentKindInfo] = {
    "theory": ExperimentKindInfo("theory", "E1: theory on D(p, d, eta)", "theory"),
    "train": ExperimentKindInfo("train", "train one model, then evaluate it", "train"),
    "evaluate": ExperimentKindInfo("evaluate", "attack a trained model", "evaluate"),
    "visualize": ExperimentKindInfo("visualize", "E4-E6: large-eps examples, interpolations, "
                                    "gradients", "visualize"),
    "linear_features": ExperimentKindInfo("linear_features", "E3: linear classifiers on "
                                          "binary MNIST", "linear_features"),
}

# --------------------------------------------------------------------------- name resolution

_PLUGIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_LIBRARY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class UnknownName(ValueError):
    """A name the catalog cannot resolve; the message is one line with the known names."""


def model_plugins() -> dict[str, str]:
    """Installed ``robustlab.models`` entry points: name -> ``module:attribute`` (not imported)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=MODEL_GROUP)}


def dataset_plugins() -> dict[str, str]:
    """Installed ``robustlab.datasets`` entry points: name -> ``module:attribute`` (not imported)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=DATASET_GROUP)}


def timm_installed() -> bool:
    """Whether ``timm`` can be imported (found without importing it)."""
    return importlib.util.find_spec("timm") is not None


def torchvision_model_names() -> list[str]:
    """torchvision's registered model builders (``torchvision.models.list_models``).

    Imported lazily: it loads torch and torchvision (seconds), needed only for the
    ``torchvision:`` names, so validating other specs stays fast.
    """
    import torchvision.models  # noqa: PLC0415 - heavy, optional for this torch-free module

    return sorted(torchvision.models.list_models())


def check_arch(name: str) -> str:
    """``name`` if ``model.arch`` can be built here, else ``UnknownName`` saying why in one line.

    Built-ins and installed entry points are looked up without importing any plugin;
    ``torchvision:<name>`` is checked against torchvision's list, ``timm:<name>`` only needs
    timm to be importable (its list is too long to check without importing it).
    """
    if name in MODELS:
        return name
    if name.startswith(TORCHVISION_PREFIX):
        tv_name = name[len(TORCHVISION_PREFIX):]
        if not _LIBRARY_NAME.match(tv_name):
            raise UnknownName(f"{name!r} is not a torchvision model name")
        known = torchvision_model_names()
        if tv_name not in known:
            close = [n for n in known if n.startswith(tv_name[:5])][:8] or known[:8]
            raise UnknownName(f"torchvision has no model {tv_name!r} (e.g. {', '.join(close)}; "
                              "see torchvision.models.list_models())")
        return name
    if name.startswith(TIMM_PREFIX):
        if not _LIBRARY_NAME.match(name[len(TIMM_PREFIX):]):
            raise UnknownName(f"{name!r} is not a timm model name")
        if not timm_installed():
            raise UnknownName(f"{name!r} needs timm, which is not installed: {TIMM_INSTALL_HINT}")
        return name
    plugins = model_plugins()
    if _PLUGIN_NAME.match(name) and name in plugins:
        return name
    known_names = [*MODELS, *sorted(plugins), "torchvision:<name>", "timm:<name>"]
    raise UnknownName(f"unknown arch {name!r}; known: {', '.join(known_names)}; "
                      + HOW_TO_REGISTER.format(group=MODEL_GROUP))


def check_dataset(name: str) -> str:
    """``name`` if ``dataset.name`` is a built-in, a format or an installed plugin, else why not."""
    if name in DATASETS or name in DATASET_FORMATS:
        return name
    plugins = dataset_plugins()
    if _PLUGIN_NAME.match(name) and name in plugins:
        return name
    known_names = [*DATASETS, *DATASET_FORMATS, *sorted(plugins)]
    raise UnknownName(f"unknown dataset {name!r}; known: {', '.join(known_names)}; "
                      + HOW_TO_REGISTER.format(group=DATASET_GROUP))


def large_eps_radii(dataset: str) -> dict[str, float]:
    """Table 3 radii of a built-in dataset; empty for datasets the paper does not cover."""
    info = DATASETS.get(dataset)
    return dict(info.large_eps) if info is not None else {}
