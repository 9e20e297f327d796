"""The model registry: names agree with the spec, shapes and layer sizes follow the paper."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import nn

from contract import catalog
from contract.specs.architecture import ModelConfig
from workers.science.datasets import DATASETS
from workers.science.models import (
    LEAKINESS,
    MODELS,
    RAW_INPUTS,
    CifarResNet,
    LinearClassifier,
    MnistCNN,
    ModelBuildError,
    Normalize,
    NormalizedModel,
    PreActResidualUnit,
    build_model,
    home_dataset,
    output_size,
)

SMALL_INPUT = {"resnet50": (3, 64, 64)}
"""ResNet-50 is size-agnostic (adaptive pooling): a small input keeps the test quick."""


def _batch(arch: str, batch: int = 2) -> torch.Tensor:
    shape = SMALL_INPUT.get(arch, DATASETS[home_dataset(arch)].input_shape)
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))


def test_every_catalog_model_validates_and_resolves() -> None:
    assert set(MODELS) == set(catalog.MODELS)
    for name, info in catalog.MODELS.items():
        assert ModelConfig(arch=name).arch == name
        module, attribute = info.builder.split(":")
        assert MODELS[name] is getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("arch", list(MODELS))
def test_every_arch_maps_images_to_logits(arch: str) -> None:
    num_classes = DATASETS[home_dataset(arch)].num_classes
    model = build_model(arch, num_classes).eval()
    x = _batch(arch, batch=3).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (3, output_size(num_classes))
    assert torch.isfinite(logits).all()
    (grad,) = torch.autograd.grad(logits.sum(), x)
    assert grad.abs().sum() > 0, "attacks need a gradient with respect to the input"


@pytest.mark.parametrize("arch", list(MODELS))
def test_binary_task_has_one_logit(arch: str) -> None:
    model = build_model(arch, 2).eval()
    assert model(_batch(arch)).shape == (2, 1)


def test_home_datasets_are_the_papers_pairings() -> None:
    assert {arch: home_dataset(arch) for arch in MODELS} == {
        "linear": "binary_mnist",
        "mnist_cnn": "mnist",
        "cifar_resnet": "cifar10",
        "resnet50": "restricted_imagenet",
        "preact_resnet18": "cifar10",  # the field's (test_field_architectures.py)
        "wide_resnet": "cifar10",
        "dm_wide_resnet": "cifar10",
    }


def test_linear_is_w_dot_x_plus_b() -> None:
    model = build_model("linear", 2)
    assert isinstance(model, LinearClassifier)
    assert model.weight.shape == (1, 28 * 28) and model.bias.shape == (1,)
    x = _batch("linear", batch=4)  # (B, 1, 28, 28)
    expected = x.flatten(1) @ model.weight.detach()[0] + model.bias.detach()[0]
    torch.testing.assert_close(model(x)[:, 0].detach(), expected)


def test_mnist_cnn_layers_are_madrylab_mnist_challenge() -> None:
    model = build_model("mnist_cnn", 10)
    assert isinstance(model, MnistCNN)
    assert model.conv1.weight.shape == (32, 1, 5, 5)
    assert model.conv2.weight.shape == (64, 32, 5, 5)
    assert model.fc1.weight.shape == (1024, 7 * 7 * 64)
    assert model.fc2.weight.shape == (10, 1024)
    expected = (32 * 25 + 32) + (64 * 32 * 25 + 64) + (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == expected

    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("conv1", "conv2"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
    model(_batch("mnist_cnn"))
    assert shapes == {"conv1": (2, 32, 28, 28), "conv2": (2, 64, 14, 14)}, "'same' padding"


def _units(model: CifarResNet) -> list[PreActResidualUnit]:
    return list(model.units)  # type: ignore[arg-type]


def test_cifar_resnet_structure() -> None:
    model = build_model("cifar_resnet", 10)
    assert isinstance(model, NormalizedModel) and isinstance(model.net, CifarResNet)
    net = model.net
    units = _units(net)
    assert len(units) == 3 * 5
    assert [unit.conv2.out_channels for unit in units] == [16] * 5 + [32] * 5 + [64] * 5
    assert [unit.conv1.stride[0] for unit in units] == [1] * 5 + [2] + [1] * 4 + [2] + [1] * 4
    assert [unit.activate_before_residual for unit in units] == [True] + [False] * 14
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 15 and net.fc.in_features == 64
    features: list[tuple[int, ...]] = []
    net.units.register_forward_hook(lambda _m, _i, out: features.append(tuple(out.shape)))
    model(_batch("cifar_resnet"))
    assert features == [(2, 64, 8, 8)]


def _silence_residual(unit: PreActResidualUnit) -> PreActResidualUnit:
    """Zero the last conv, so the unit's output is its shortcut alone; eval-mode BN."""
    nn.init.zeros_(unit.conv2.weight)
    return unit.eval()


def test_cifar_resnet_identity_shortcut_is_the_raw_input() -> None:
    unit = _silence_residual(_units(build_model("cifar_resnet", 10).net)[1])
    x = torch.randn(2, 16, 32, 32)
    torch.testing.assert_close(unit(x), x)


def test_cifar_resnet_first_unit_shares_the_activation() -> None:
    unit = _silence_residual(_units(build_model("cifar_resnet", 10).net)[0])
    x = torch.randn(2, 16, 32, 32)
    bn = x / math.sqrt(1 + unit.bn1.eps)  # fresh BN in eval mode: mean 0, var 1, identity affine
    torch.testing.assert_close(unit(x), torch.where(bn < 0, LEAKINESS * bn, bn))


def test_cifar_resnet_downsampling_shortcut_pools_and_zero_pads_channels() -> None:
    unit = _silence_residual(_units(build_model("cifar_resnet", 10).net)[5])  # 16 -> 32, stride 2
    x = torch.randn(2, 16, 32, 32)
    out = unit(x)  # (2, 32, 16, 16)
    pooled = x.reshape(2, 16, 16, 2, 16, 2).mean(dim=(3, 5))
    assert out.shape == (2, 32, 16, 16)
    torch.testing.assert_close(out[:, 8:24], pooled)
    assert out[:, :8].abs().max() == 0 and out[:, 24:].abs().max() == 0


@pytest.mark.parametrize("arch", list(MODELS))
def test_normalisation_lives_inside_the_model(arch: str) -> None:
    info = DATASETS[home_dataset(arch)]
    model = build_model(arch, info.num_classes).eval()
    normalizers = [m for m in model.modules() if isinstance(m, Normalize)]
    if info.normalization is None or getattr(model, RAW_INPUTS, False):
        assert normalizers == []  # none, or the network normalises itself (dm_wide_resnet)
        return
    assert isinstance(model, NormalizedModel) and normalizers == [model.normalize]
    mean = torch.tensor(info.normalization.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.normalization.std).view(1, -1, 1, 1)
    x = _batch(arch)
    torch.testing.assert_close(model(x), model.net((x - mean) / std))


def test_dataset_keyword_adapts_shape_and_normalisation() -> None:
    cnn = build_model("mnist_cnn", 10, dataset="cifar10")
    assert isinstance(cnn, NormalizedModel) and cnn.net.fc1.in_features == 8 * 8 * 64
    assert cnn(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    linear = build_model("linear", 10, dataset="cifar10")
    assert linear.net.weight.shape == (10, 3 * 32 * 32)
    resnet = build_model("cifar_resnet", 2, dataset="binary_mnist").eval()
    assert resnet(torch.rand(2, 1, 28, 28)).shape == (2, 1)


def test_state_dict_round_trip_includes_normalisation() -> None:
    torch.manual_seed(0)
    trained = build_model("cifar_resnet", 10).eval()
    fresh = build_model("cifar_resnet", 10).eval()
    assert "normalize.mean" in trained.state_dict() and "normalize.std" in trained.state_dict()
    fresh.load_state_dict(trained.state_dict())
    x = _batch("cifar_resnet")
    torch.testing.assert_close(fresh(x), trained(x))


def test_unknown_arch_names_the_known_ones() -> None:
    with pytest.raises(ModelBuildError, match="mnist_cnn.*robustlab.models"):
        build_model("vgg16", 10)
