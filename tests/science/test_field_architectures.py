"""The field's architectures against RobustBench's own code, and .safetensors checkpoints.

RobustBench (``pip install --no-deps robustbench==1.1.1``, test only: ``make env``) is not
imported as a package: its ``__init__`` pulls in timm, gdown and requests. Its architecture
modules import only torch, so each is loaded from its file (``tests.robustbench_code``).
A state_dict of their network, with every weight and every BatchNorm statistic drawn at random,
must load into robustlab's with ``strict=True`` and give the same logits; and the other way.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from contract.datasets import DATASETS
from contract.specs.architecture import ModelConfig
from tests.robustbench_code import robustbench_architecture
from workers.science.export import ExportRefused, robustbench_model
from workers.science.models import (
    RAW_INPUTS,
    ModelBuildError,
    Normalize,
    NormalizedModel,
    build_model,
    inner_network,
)
from workers.science.state_dicts import load_source_model

CPU = torch.device("cpu")
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


RESNET = robustbench_architecture("resnet")
WIDE_RESNET = robustbench_architecture("wide_resnet")
DM_WIDE_RESNET = robustbench_architecture("dm_wide_resnet")


def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Every weight, bias and BatchNorm statistic drawn at random (scaled to keep logits finite)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                shape = module.weight.shape
                module.weight.copy_(0.5 + torch.rand(shape, generator=gen))
                module.bias.copy_(torch.randn(shape, generator=gen) * 0.2)
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.copy_(torch.randn(shape, generator=gen) * 0.3)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(shape, generator=gen))
                assert module.num_batches_tracked is not None
                module.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (1,), generator=gen)))
    return net.eval()


def images(shape: tuple[int, int, int] = (3, 32, 32), batch: int = 4) -> torch.Tensor:
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(7))


def assert_same_network(theirs: nn.Module, ours: nn.Module, x: torch.Tensor) -> None:
    """Same keys and shapes; theirs loads into ours strictly, ours into theirs; same logits."""
    their_state, our_state = theirs.state_dict(), ours.state_dict()
    assert list(our_state) == list(their_state), "the same keys, in the same order"
    assert {k: tuple(v.shape) for k, v in our_state.items()} == {
        k: tuple(v.shape) for k, v in their_state.items()}
    ours.load_state_dict(their_state, strict=True)
    ours.eval()
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1e-3, "random weights should give non-trivial logits"
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (got - expected).abs().max()
    # and back: robustlab's state_dict (its own random weights) loads into theirs strictly
    randomise(ours, seed=99)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- PreActResNet-18


@pytest.mark.parametrize(("bn_before_fc", "out_shortcut"), [(False, False), (True, False),
                                                             (True, True)])
def test_preact_resnet18_is_robustbenchs(bn_before_fc: bool, out_shortcut: bool) -> None:
    theirs = randomise(RESNET.PreActResNet(RESNET.PreActBlock, [2, 2, 2, 2], num_classes=10,
                                           bn_before_fc=bn_before_fc, out_shortcut=out_shortcut), 1)
    ours = build_model("preact_resnet18", 10, kwargs={
        "bn_before_fc": bn_before_fc, "out_shortcut": out_shortcut, "normalization": "none"})
    assert not isinstance(ours, NormalizedModel)
    assert_same_network(theirs, ours, images())


def test_preact_resnet18_default_is_robustbenchs_default() -> None:
    theirs = randomise(RESNET.PreActResNet18(), 2)
    ours = inner_network(build_model("preact_resnet18", 10))
    assert_same_network(theirs, ours, images())


# --------------------------------------------------------------------------- WideResNet


@pytest.mark.parametrize("kwargs", [
    {"depth": 16, "widen_factor": 2},
    {"depth": 16, "widen_factor": 1, "sub_block1": True, "bias_last": False},  # 16 -> 16: no conv
    {"depth": 22, "widen_factor": 2, "sub_block1": True},
], ids=["wrn-16-2", "wrn-16-1-sub-block-no-bias", "wrn-22-2-sub-block"])
def test_wide_resnet_is_robustbenchs(kwargs: dict[str, Any]) -> None:
    theirs = randomise(WIDE_RESNET.WideResNet(
        depth=kwargs["depth"], num_classes=10, widen_factor=kwargs["widen_factor"],
        sub_block1=kwargs.get("sub_block1", False), bias_last=kwargs.get("bias_last", True)), 3)
    ours = build_model("wide_resnet", 10, kwargs={**kwargs, "normalization": "none"})
    assert not isinstance(ours, NormalizedModel)
    assert_same_network(theirs, ours, images())


def test_wide_resnet_dropout_is_only_in_training() -> None:
    theirs = randomise(WIDE_RESNET.WideResNet(depth=16, widen_factor=1, dropRate=0.3), 4)
    ours = build_model("wide_resnet", 10, kwargs={"depth": 16, "widen_factor": 1, "dropout": 0.3,
                                                  "normalization": "none"})
    assert_same_network(theirs, ours, images())
    x = images()
    assert not torch.equal(ours.train()(x), ours.train()(x)), "dropout draws in training"


# --------------------------------------------------------------------------- DM's WideResNet


def dm_case(name: str) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int, int]]:
    """(RobustBench kwargs, robustlab kwargs, input shape) of one DM-WRN variant."""
    swish = DM_WIDE_RESNET.Swish
    cases = {
        # DM-WRN-28-10's layout (depth 28) at width 1, swish as DeepMind's own autograd function
        "28-swish": ({"depth": 28, "width": 1, "activation_fn": swish},
                     {"depth": 28, "width": 1, "activation": "swish"}, (3, 32, 32)),
        # CIFAR-100 statistics, 100 classes, torch's SiLU (Rebuffi et al.'s entries)
        "16-silu-cifar100": ({"depth": 16, "width": 2, "activation_fn": nn.SiLU, "num_classes": 100,
                              "mean": CIFAR100_MEAN, "std": CIFAR100_STD},
                             {"depth": 16, "width": 2, "activation": "silu",
                              "mean": list(CIFAR100_MEAN), "std": list(CIFAR100_STD)}, (3, 32, 32)),
        # MNIST-style: one channel, 28x28 padded by 2 to 32x32
        "16-relu-padded-grey": ({"depth": 16, "width": 1, "padding": 2, "num_input_channels": 1,
                                 "mean": (0.5,), "std": (0.25,)},
                                {"depth": 16, "width": 1, "padding": 2, "num_input_channels": 1,
                                 "mean": 0.5, "std": [0.25]}, (1, 28, 28)),
    }
    return cases[name]


@pytest.mark.parametrize("case", ["28-swish", "16-silu-cifar100", "16-relu-padded-grey"])
def test_dm_wide_resnet_is_robustbenchs(case: str) -> None:
    their_kwargs, our_kwargs, shape = dm_case(case)
    theirs = randomise(DM_WIDE_RESNET.DMWideResNet(**their_kwargs), 5)
    num_classes = their_kwargs.get("num_classes", 10)
    dataset = {1: "mnist", 3: "cifar10"}[shape[0]]
    ours = build_model("dm_wide_resnet", num_classes, dataset=dataset, kwargs=our_kwargs)
    assert not isinstance(ours, NormalizedModel), "it normalises itself: nothing in front"
    assert not any(isinstance(m, Normalize) for m in ours.modules())
    assert "mean" not in ours.state_dict() and "std" not in ours.state_dict()
    assert_same_network(theirs, ours, images(shape))


def test_dm_wide_resnet_defaults_are_robustbenchs_defaults() -> None:
    theirs = DM_WIDE_RESNET.DMWideResNet(depth=16, width=1)
    ours = build_model("dm_wide_resnet", 10, kwargs={"depth": 16, "width": 1})
    torch.testing.assert_close(ours.mean, theirs.mean)
    torch.testing.assert_close(ours.std, theirs.std)
    assert_same_network(randomise(theirs, 6), ours, images())


# --------------------------------------------------------------------------- normalisation


def test_default_normalization_puts_the_datasets_in_front() -> None:
    model = build_model("wide_resnet", 10, kwargs={"depth": 16, "widen_factor": 1})
    assert isinstance(model, NormalizedModel) and not getattr(model.net, RAW_INPUTS, False)
    assert set(model.state_dict()) == {"normalize.mean", "normalize.std"} | {
        f"net.{key}" for key in model.net.state_dict()}
    bare = build_model("wide_resnet", 10, kwargs={"depth": 16, "widen_factor": 1,
                                                  "normalization": "none"})
    assert getattr(bare, RAW_INPUTS) is True


# --------------------------------------------------------------------------- through the loader


def their_wrn() -> nn.Module:
    return randomise(WIDE_RESNET.WideResNet(depth=16, widen_factor=2, sub_block1=True), 8)


WRN_KWARGS = {"depth": 16, "widen_factor": 2, "sub_block1": True}


def load(path: Path, kwargs: dict[str, Any], arch: str = "wide_resnet") -> nn.Module:
    model, meta = load_source_model(path, CPU, model_cfg=ModelConfig(arch=arch, kwargs=kwargs),
                                    info_for=lambda: DATASETS["cifar10"])
    assert meta["format"] == "foreign"
    return model


@pytest.mark.parametrize("wrap", ["state_dict", "module."])
def test_a_robustbench_checkpoint_loads_as_source(wrap: str, tmp_path: Path) -> None:
    theirs = their_wrn()
    state = theirs.state_dict()
    if wrap == "module.":  # DataParallel's prefix, as several model-zoo files have
        state = {f"module.{key}": value for key, value in state.items()}
    torch.save({"state_dict": state}, tmp_path / "Zhang2019Theoretically.pt")  # RobustBench's shape
    x = images()
    raw = load(tmp_path / "Zhang2019Theoretically.pt", {**WRN_KWARGS, "normalization": "none"})
    behind = load(tmp_path / "Zhang2019Theoretically.pt", WRN_KWARGS)
    assert isinstance(behind, NormalizedModel)
    with torch.no_grad():
        assert torch.allclose(raw(x), theirs(x), rtol=1e-4, atol=1e-5)
        assert torch.allclose(behind(x), theirs(behind.normalize(x)), rtol=1e-4, atol=1e-5)


def test_safetensors_checkpoint_round_trips(tmp_path: Path) -> None:
    theirs = randomise(DM_WIDE_RESNET.DMWideResNet(depth=16, width=1, activation_fn=nn.SiLU), 9)
    save_file(theirs.state_dict(), tmp_path / "dm.safetensors")
    model = load(tmp_path / "dm.safetensors", {"depth": 16, "width": 1, "activation": "silu"},
                 arch="dm_wide_resnet")
    for key, value in theirs.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = images()
    with torch.no_grad():
        assert torch.allclose(model(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_safetensors_from_robustlab_model_round_trips(tmp_path: Path) -> None:
    model = randomise(build_model("preact_resnet18", 10), 10)  # behind cifar10's normalisation
    save_file(model.state_dict(), tmp_path / "whole.safetensors")
    loaded = load(tmp_path / "whole.safetensors", {}, arch="preact_resnet18")
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


class _OpensAFile:
    """Unpickling this calls open(marker, 'w'): a pickle that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_renamed_safetensors_is_refused_unread(writer: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.safetensors"
    payload = {"conv1.weight": torch.zeros(2), "boom": _OpensAFile(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError) as caught:
        load(path, WRN_KWARGS)
    message = str(caught.value)
    assert "\n" not in message and "safetensors" in message and str(path) in message
    assert not marker.exists(), "nothing in the file was unpickled"


def test_a_truncated_safetensors_file_is_one_line(tmp_path: Path) -> None:
    save_file(their_wrn().state_dict(), tmp_path / "full.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tmp_path / "full.safetensors").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"^\S*cut.safetensors is not a readable safetensors") as caught:
        load(cut, WRN_KWARGS)
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize(("arch", "kwargs", "architecture"), [
    ("preact_resnet18", {"bn_before_fc": True, "normalization": "none"}, "PreActResNet-18"),
    ("wide_resnet", {"depth": 16, "widen_factor": 2, "sub_block1": True, "bias_last": False,
                     "normalization": "none"}, "WideResNet-16-2"),
    ("dm_wide_resnet", {"depth": 16, "width": 1, "activation": "swish", "mean": [0.5, 0.4, 0.3],
                        "std": [0.2, 0.25, 0.3]}, "WideResNet-16-1"),
])
def test_an_export_loads_into_the_robustbench_class_it_names(
        arch: str, kwargs: dict[str, Any], architecture: str) -> None:
    ours = randomise(build_model(arch, 10, kwargs=kwargs), 11)
    exported = robustbench_model(ours, arch, kwargs)
    assert (exported.architecture, exported.num_classes) == (architecture, 10)
    # the printed constructor, run against RobustBench's own modules
    theirs = eval(exported.constructor, {"resnet": RESNET, "wide_resnet": WIDE_RESNET,  # noqa: S307
                                         "dm_wide_resnet": DM_WIDE_RESNET, "nn": nn})
    theirs.load_state_dict(exported.state_dict, strict=True)
    x = images()
    with torch.no_grad():
        assert torch.allclose(theirs.eval()(x), ours(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("arch", "kwargs", "dataset", "words"), [
    ("wide_resnet", {"depth": 16, "widen_factor": 1}, "cifar10", "use `normalization: none`"),
    ("cifar_resnet", {}, "cifar10", "arch 'cifar_resnet' has no RobustBench layout"),
    ("preact_resnet18", {"normalization": "none"}, "mnist", "PreActResNet takes RGB images"),
])
def test_what_robustbench_cannot_hold_is_refused(arch: str, kwargs: dict[str, Any], dataset: str,
                                                 words: str) -> None:
    with pytest.raises((ExportRefused, ModelBuildError), match=re.escape(words)):
        model = build_model(arch, 10, dataset=dataset, kwargs=kwargs)
        robustbench_model(model, arch, kwargs)


# --------------------------------------------------------------------------- one-line refusals


@pytest.mark.parametrize(("arch", "kwargs", "dataset", "words"), [
    ("wide_resnet", {"depth": 27}, "cifar10", "depth must be 6n + 4"),
    ("wide_resnet", {"normalization": "robustbench"}, "cifar10", "normalization must be one of"),
    ("dm_wide_resnet", {"activation": "gelu"}, "cifar10", "activation must be one of"),
    ("dm_wide_resnet", {"depth": 16, "width": 1}, "mnist", "32x32 images; the data is 28x28 "
                                                           "(padding: 2 takes 28x28)"),
    ("dm_wide_resnet", {"depth": 16, "width": 1, "padding": 2}, "mnist", "mean must be 1 number"),
    ("preact_resnet18", {"bn_before_fc": "yes"}, "cifar10", "bn_before_fc must be true or false"),
    ("preact_resnet18", {}, "restricted_imagenet", "takes CIFAR-sized 32x32 images"),
    ("wide_resnet", {"widen": 2}, "cifar10", "unexpected keyword argument 'widen'"),
])
def test_bad_kwargs_are_one_line(arch: str, kwargs: dict[str, Any], dataset: str,
                                 words: str) -> None:
    with pytest.raises(ModelBuildError, match=re.escape(words)) as caught:
        build_model(arch, DATASETS[dataset].num_classes, dataset=dataset, kwargs=kwargs)
    assert "\n" not in str(caught.value)
