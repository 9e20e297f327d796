"""The catalog: one list of names, every name resolves, plugins register through entry points only."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
import torch
from pydantic import ValidationError

from contract import catalog
from contract.datasets import DATASETS
from contract.registry import load_object
from contract.specs.architecture import ModelConfig
from contract.specs.attacks import ATTACKS, kind_of
from contract.specs.data import DatasetConfig
from contract.specs.kinds import SPEC_KINDS
from workers.science.models import ModelBuildError, build_model
from workers.science.visualize import LARGE_EPS, default_large_eps_attacks

PLUGIN_SOURCE = '''
from torch import nn


def build_wide(num_classes, input_shape, width=8):
    channels, height, width_px = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width_px, width), nn.ReLU(),
                         nn.Linear(width, num_classes))
'''


def write_plugin(root: Path, package: str, entry_points: str) -> Path:
    """An installed distribution without pip: a module and its ``*.dist-info`` on ``root``."""
    (root / f"{package}.py").write_text(PLUGIN_SOURCE)
    info = root / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


@pytest.fixture()
def plugin_on_path(tmp_path: Path) -> Iterator[str]:
    write_plugin(tmp_path, "catalog_test_plugin",
                 "[robustlab.models]\nwide_mlp = catalog_test_plugin:build_wide\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield "catalog_test_plugin"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("catalog_test_plugin", None)
        importlib.invalidate_caches()


def test_every_registered_name_resolves_to_its_implementation() -> None:
    """Kinds, attacks and training methods are registered once, with a lazy reference: each
    reference must import and be callable, and every attack's norms must be known norms."""
    assert set(SPEC_KINDS) == {"theory", "train", "evaluate", "visualize", "linear_features"}
    for model in SPEC_KINDS.values():
        assert callable(load_object(model.runner)), model
    for kind, attack in ATTACKS.items():
        assert kind_of(attack) == kind and attack.title
        norms = get_args(attack.model_fields["norm"].annotation)
        assert norms and set(norms) <= set(catalog.NORMS), kind
        assert callable(load_object(attack.implementation)), kind
    for name, method in catalog.training_methods().items():
        assert callable(load_object(method.implementation)), name


def test_every_builtin_dataset_has_the_papers_radii() -> None:
    for name, info in DATASETS.items():
        assert info.table2 and set(info.table2) <= set(catalog.NORMS), name
        assert set(info.large_eps) == {"linf", "l2"}, name
    assert LARGE_EPS["cifar10"] == {"linf": 32 / 255, "l2": 1200 / 255}


def test_a_dataset_without_table3_radii_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="Table 3 gives no large-eps radii for 'image_folder'"):
        default_large_eps_attacks("image_folder")


def test_unknown_arch_lists_the_known_names_and_how_to_register() -> None:
    with pytest.raises(ValidationError) as caught:
        ModelConfig(arch="tiny_net")
    text = str(caught.value)
    for expected in ("unknown arch 'tiny_net'", "mnist_cnn", "torchvision:<name>",
                     "robustlab.models"):
        assert expected in text


def test_timm_is_not_installed_here_and_says_how_to_get_it() -> None:
    assert importlib.util.find_spec("timm") is None, "the dev env must not have timm"
    with pytest.raises(ValidationError, match=r"pip install 'robustlab\[timm\]'"):
        ModelConfig(arch="timm:resnet18")
    with pytest.raises(ModelBuildError, match=r"pip install 'robustlab\[timm\]'"):
        build_model("timm:resnet18", 10, dataset="cifar10")


def test_a_dotted_path_in_a_spec_is_never_imported() -> None:
    assert "xml.dom.minidom" not in sys.modules
    for arch in ("xml.dom.minidom:parseString", "xml.dom.minidom"):
        with pytest.raises(ValidationError, match="unknown arch"):
            ModelConfig(arch=arch)
    with pytest.raises(ValidationError, match="unknown dataset"):
        DatasetConfig(name="xml.dom.minidom:parse")
    assert "xml.dom.minidom" not in sys.modules


def test_torchvision_names_resolve_and_build_with_kwargs() -> None:
    assert ModelConfig(arch="torchvision:resnet18").arch == "torchvision:resnet18"
    with pytest.raises(ValidationError, match="torchvision has no model 'resnet19'"):
        ModelConfig(arch="torchvision:resnet19")
    model = build_model("torchvision:mobilenet_v3_small", 10, dataset="cifar10",
                        kwargs={"dropout": 0.0}).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_an_installed_entry_point_is_a_model(plugin_on_path: str) -> None:
    assert catalog.model_plugins() == {"wide_mlp": "catalog_test_plugin:build_wide"}
    assert ModelConfig(arch="wide_mlp", kwargs={"width": 5}).arch == "wide_mlp"
    model = build_model("wide_mlp", 10, dataset="mnist", kwargs={"width": 5})
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert model[1].out_features == 5  # type: ignore[index]
    with pytest.raises(ModelBuildError, match="cannot build 'wide_mlp' with kwargs"):
        build_model("wide_mlp", 10, dataset="mnist", kwargs={"depth": 3})


def test_dataset_fields_belong_to_their_datasets() -> None:
    with pytest.raises(ValidationError, match="dataset 'image_folder' needs root"):
        DatasetConfig(name="image_folder")
    with pytest.raises(ValidationError, match="image_size is for image_folder only"):
        DatasetConfig(name="npz", root="x.npz", image_size=32)
    with pytest.raises(ValidationError, match="mnist has its own normalisation"):
        DatasetConfig.model_validate({"name": "mnist", "normalization": {"mean": [0.1],
                                                                         "std": [0.3]}})
    with pytest.raises(ValidationError, match="mean has 1 values but std has 3"):
        DatasetConfig.model_validate({"name": "npz", "root": "x.npz",
                                      "normalization": {"mean": [0.1], "std": [1, 1, 1]}})
    with pytest.raises(ValidationError, match="unknown dataset 'imagefolder'"):
        DatasetConfig(name="imagefolder")
