"""The catalog: every name robustlab knows, with its static facts, in torch-free modules.

This module holds the norms, the architectures, the training methods and the theory's models,
and resolves names against them and the installed plugins. Datasets are in
``contract.datasets``; attack kinds and experiment kinds register as their spec classes
(``contract.specs.attacks.ATTACKS``, ``contract.specs.kinds.SPEC_KINDS``); run statuses are
``contract.status.RunStatus``. The spec models take their allowed values and error messages
from these lists; the science takes the facts and the ``module:attribute`` implementing each
name, imported lazily when a run executes. Nothing here imports torch.

Open registries, closed imports: installed distributions add models, datasets, attacks and
training methods through entry points (``MODEL_GROUP``, ``DATASET_GROUP``, ``ATTACK_GROUP``,
``TRAINING_METHOD_GROUP``), and ``torchvision:<name>`` / ``timm:<name>`` name models of those
libraries. Only installed, registered code is ever imported; a dotted path written in a spec
is never imported (a spec uploaded to the dashboard would run any code).

Where each kind of change goes: ARCHITECTURE.md, "Adding things".
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from contract.datasets import DATASET_FORMATS, DATASETS
from contract.registry import entry_points
from contract.specs.values import NormName

MODEL_GROUP = "robustlab.models"
"""Entry-point group of model builders: ``name = "package.module:builder"``."""
DATASET_GROUP = "robustlab.datasets"
"""Entry-point group of dataset loaders: ``name = "package.module:loader"``."""
ATTACK_GROUP = "robustlab.attacks"
"""Entry-point group of attacks: ``name = "package.spec_module:SpecClass"``, a torch-free
``contract.specs.attacks.AttackSpec`` subclass naming its implementation."""
TRAINING_METHOD_GROUP = "robustlab.training_methods"
"""Entry-point group of training methods: ``name = "package.module:function"``, a
``workers.science.training.common.TrainingMethod`` (imported when a run trains)."""
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
if set(NORMS) != set(get_args(NormName)):  # the spec's Literal must be spelt out for mypy
    raise RuntimeError(f"NORMS and NormName differ: {sorted(set(NORMS) ^ set(get_args(NormName)))}")

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
_FIELD = "workers.science.models.field"
MODELS: dict[str, ModelInfo] = {
    "linear": ModelInfo("linear", "linear classifier", f"{_NETWORKS}:LinearClassifier",
                        "binary_mnist"),
    "mnist_cnn": ModelInfo("mnist_cnn", "mnist_challenge CNN", f"{_NETWORKS}:MnistCNN", "mnist"),
    "cifar_resnet": ModelInfo("cifar_resnet", "cifar10_challenge ResNet",
                              f"{_NETWORKS}:CifarResNet", "cifar10"),
    "resnet50": ModelInfo("resnet50", "ResNet-50", f"{_NETWORKS}:resnet50", "restricted_imagenet"),
    "preact_resnet18": ModelInfo("preact_resnet18", "PreActResNet-18 (RobustBench's layout)",
                                 f"{_FIELD}:preact_resnet18", "cifar10"),
    "wide_resnet": ModelInfo("wide_resnet", "WideResNet (TRADES / RobustBench's layout)",
                             f"{_FIELD}:wide_resnet", "cifar10"),
    "dm_wide_resnet": ModelInfo("dm_wide_resnet", "DeepMind's WideResNet (RobustBench's layout)",
                                f"{_FIELD}:dm_wide_resnet", "cifar10"),
}
"""The built-in architectures: the paper's four, then the field's (RobustBench's key layouts,
``workers.science.models.field``)."""

# --------------------------------------------------------------------------- training methods


@dataclass(frozen=True)
class TrainingMethodInfo:
    """A training method of ``adversary.method``."""

    name: str
    title: str
    implementation: str
    """``module:attribute`` of its ``TrainingMethod`` function (imported when a run trains)."""


_TRAINING = "workers.science.training"
BUILTIN_TRAINING_METHODS: dict[str, TrainingMethodInfo] = {
    "pgd": TrainingMethodInfo("pgd", "PGD adversarial training (Madry et al. 2018); eps 0 is "
                              "standard training", f"{_TRAINING}.pgd:pgd_training"),
    "trades": TrainingMethodInfo("trades", "TRADES (Zhang et al. 2019): CE + beta * KL to the "
                                 "worst point of the ball", f"{_TRAINING}.trades:trades_training"),
    "fgsm_rs": TrainingMethodInfo("fgsm_rs", "fast adversarial training (Wong et al. 2020): FGSM "
                                  "from a random start", f"{_TRAINING}.fgsm_rs:fgsm_rs_training"),
}


def training_methods() -> dict[str, TrainingMethodInfo]:
    """Every training method: the built-ins, then installed ``robustlab.training_methods``."""
    methods = dict(BUILTIN_TRAINING_METHODS)
    for name, ref in entry_points(TRAINING_METHOD_GROUP).items():
        methods.setdefault(name, TrainingMethodInfo(name, f"plugin {ref}", ref))
    return methods


# --------------------------------------------------------------------------- theory models


@dataclass(frozen=True)
class TheoryModelInfo:
    """A linear classifier of E1 (``TheorySpec.models``); ``workers.science.theory`` fits it."""

    name: str
    title: str
    loss: str | None
    """The margin loss it minimises (``workers.science.theory.MARGIN_LOSSES``); None for f_avg,
    which is fixed by eq. (4) and not trained."""
    regularised: bool
    """Adds eq. (5)'s (lambda/2)||w||_2^2 with lambda = 1/(C n); logistic regression is plain."""

    @property
    def trainable(self) -> bool:
        return self.loss is not None


THEORY_MODELS: dict[str, TheoryModelInfo] = {
    "averaging": TheoryModelInfo("averaging", "f_avg, eq. (4)", loss=None, regularised=False),
    "svm": TheoryModelInfo("svm", "soft-margin SVM, eq. (5)", loss="hinge", regularised=True),
    "logistic": TheoryModelInfo("logistic", "logistic regression", loss="logistic",
                                regularised=False),
}

# --------------------------------------------------------------------------- name resolution

_PLUGIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_LIBRARY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class UnknownName(ValueError):
    """A name the catalog cannot resolve; the message is one line with the known names."""


def model_plugins() -> dict[str, str]:
    """Installed ``robustlab.models`` entry points: name -> ``module:attribute`` (not imported)."""
    return entry_points(MODEL_GROUP)


def dataset_plugins() -> dict[str, str]:
    """Installed ``robustlab.datasets`` entry points: name -> ``module:attribute`` (not imported)."""
    return entry_points(DATASET_GROUP)


def timm_installed() -> bool:
    """Whether ``timm`` can be imported (found without importing it)."""
    return importlib.util.find_spec("timm") is not None


@functools.lru_cache(maxsize=1)
def torchvision_model_names() -> list[str]:
    """torchvision's registered model builders, read from its source without importing it.

    ``torchvision.models.list_models()`` would import torch and torchvision (seconds, and a
    heavy framework in the torch-free contract). The same names are the functions its modules
    decorate with ``@register_model()`` (or ``@register_model(name=...)``), found by parsing
    ``torchvision/models/**/*.py`` (a test compares with ``list_models()``). Empty when
    torchvision is not installed.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return []
    names: set[str] = set()
    for root in spec.submodule_search_locations:
        for path in sorted(Path(root, "models").rglob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError):
                continue
            names.update(_registered_models(tree))
    return sorted(names)


def _registered_models(tree: ast.Module) -> list[str]:
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call is not None else decorator
            if isinstance(target, ast.Name) and target.id == "register_model":
                named = [k.value for k in (call.keywords if call else []) if k.arg == "name"]
                value = named[0].value if named and isinstance(named[0], ast.Constant) else None
                found.append(value if isinstance(value, str) else node.name)
    return found


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


def check_training_method(name: str) -> str:
    """``name`` if ``adversary.method`` names a built-in or an installed method, else why not."""
    methods = training_methods()
    if name in methods:
        return name
    raise UnknownName(f"unknown training method {name!r}; known: {', '.join(methods)}; "
                      + HOW_TO_REGISTER.format(group=TRAINING_METHOD_GROUP))


def large_eps_radii(dataset: str) -> dict[str, float]:
    """Table 3 radii of a built-in dataset; empty for datasets the paper does not cover."""
    info = DATASETS.get(dataset)
    return dict(info.large_eps) if info is not None else {}
