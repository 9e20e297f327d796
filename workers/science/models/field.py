"""The field's architectures: RobustBench's three most used layouts, key for key.

A state_dict from RobustBench's model zoo loads into these with ``strict=True`` and gives the
same logits, and theirs loads ours the same way (``tests/science/test_field_architectures.py``
checks both against RobustBench's own modules). Only the names of the parameters and buffers
and the arithmetic follow theirs; the code is robustlab's.

- ``preact_resnet18``: the pre-activation ResNet-18 of ``robustbench.model_zoo.architectures.
  resnet.PreActResNet18`` (He et al. 2016, "Identity mappings"), as in Rice et al. 2020 and
  many CIFAR-10 entries. Keys ``conv1``, ``layer1..4.<i>.{bn1,conv1,bn2,conv2,shortcut.0}``,
  ``bn`` (``bn_before_fc``) and ``linear``.
- ``wide_resnet``: the WideResNet of TRADES (Zhang et al. 2019) as RobustBench's ``WideResNet``
  keeps it (Zagoruyko & Komodakis 2016). Keys ``conv1``, ``block1..3.layer.<i>.{bn1,conv1,bn2,
  conv2,convShortcut}``, ``sub_block1`` (a second first stage, in the state_dict but never
  run: TRADES' WRN-34-10 has it), ``bn1`` and ``fc``.
- ``dm_wide_resnet``: DeepMind's WideResNet (Gowal et al. 2020, Rebuffi et al. 2021) as
  RobustBench's ``DMWideResNet``: TensorFlow-style 'SAME' padding, a swish option, and its own
  input normalisation (``mean``/``std``, kept out of the state_dict like theirs). Keys
  ``init_conv``, ``layer.<g>.block.<i>.{batchnorm_0,conv_0,batchnorm_1,conv_1,shortcut}``,
  ``batchnorm`` and ``logits``.

Normalisation: RobustBench's models take [0, 1] images as they are (most normalise nowhere,
DM's models inside themselves). ``dm_wide_resnet`` always normalises itself, so robustlab puts
no dataset normalisation in front of it. ``preact_resnet18`` and ``wide_resnet`` take
``normalization``: ``dataset`` (default: behind the dataset's normalisation, like every
robustlab model) or ``none`` (the bare network on [0, 1] pixels, as RobustBench's checkpoints
expect). Both mark the network with ``sources.RAW_INPUTS``, which ``build_model`` reads.

All three average-pool a fixed window at the end (4x4 or 8x8), as RobustBench's do, so they
take CIFAR-sized inputs; a builder refuses an input size whose pooled features are not 1x1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workers.science.models.networks import InputShape
from workers.science.models.sources import RAW_INPUTS

NORMALIZATIONS = ("dataset", "none")
"""``normalization`` of preact_resnet18 / wide_resnet: the dataset's in front, or none."""
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "swish": nn.SiLU, "silu": nn.SiLU}
"""dm_wide_resnet's ``activation``: swish and SiLU are the same function x * sigmoid(x)."""
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
"""DM's CIFAR-10 statistics, dm_wide_resnet's default normalisation (as RobustBench's)."""


# --------------------------------------------------------------------------- checks


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


def _wrn_blocks(depth: Any) -> int:
    """Blocks per stage of a WideResNet of ``depth`` = 6n + 4 layers."""
    depth = _count("depth", depth, minimum=10)
    if (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4 (16, 22, 28, 34, 40, 70, ...), not {depth}")
    return (depth - 4) // 6


def _normalization(value: Any) -> str:
    if value not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, not {value!r}")
    return str(value)


def _check_pooling(arch: str, input_shape: InputShape, *, halve: Callable[[int], int],
                   halvings: int, window: int, padding: int = 0) -> None:
    """Refuse inputs whose last feature map does not pool to 1x1 (RobustBench's fixed window)."""
    for side in input_shape[1:]:
        final = side + 2 * padding
        for _ in range(halvings):
            if halve is _floor_half and final % 2:  # DM's conv and 1x1 shortcut would disagree
                raise ValueError(f"{arch}'s 'SAME' stride-2 convs need even sides at every "
                                 f"stage; the data is {input_shape[1]}x{input_shape[2]}"
                                 f"{f' padded by {padding}' if padding else ''}")
            final = halve(final)
        if final // window != 1:
            raise ValueError(f"{arch} average-pools its last {window}x{window} feature map "
                             f"(RobustBench's layout), so it takes CIFAR-sized 32x32 images; "
                             f"the data is {input_shape[1]}x{input_shape[2]}"
                             + (" (padding: 2 takes 28x28)" if arch == "dm_wide_resnet" else ""))


def _ceil_half(side: int) -> int:  # conv 3x3, stride 2, padding 1
    return (side + 1) // 2


def _floor_half(side: int) -> int:  # 'SAME' conv 3x3, stride 2: pad right/bottom by 1
    return side // 2


def _take_raw_inputs(net: nn.Module) -> nn.Module:
    setattr(net, RAW_INPUTS, True)
    return net


# --------------------------------------------------------------------------- PreActResNet-18


class PreActBlock(nn.Module):
    """BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> conv3x3, plus the shortcut.

    The shortcut is the input itself, or a 1x1 conv (``shortcut.0``) when the width or the
    resolution changes, applied to the raw input, or to the activated one with ``out_shortcut``.
    """

    shortcut: nn.Sequential | None

    def __init__(self, in_width: int, out_width: int, stride: int, out_shortcut: bool) -> None:
        super().__init__()
        self.out_shortcut = out_shortcut
        self.bn1 = nn.BatchNorm2d(in_width)
        self.conv1 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_width != out_width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_width, out_width, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H/s, W/s)
        activated = F.relu(self.bn1(x))
        into_shortcut = activated if self.out_shortcut else x
        skip = x if self.shortcut is None else self.shortcut(into_shortcut)
        residual = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return residual + skip


class PreActResNet18(nn.Module):
    """conv3x3 64 -> 4 stages of 2 pre-activation blocks (64, 128, 256, 512; strides 1, 2, 2, 2)
    -> [BN -> ReLU with ``bn_before_fc``] -> 4x4 average pool -> linear."""

    bn: nn.BatchNorm2d | None

    def __init__(self, num_outputs: int, input_shape: InputShape, *, bn_before_fc: bool = False,
                 out_shortcut: bool = False) -> None:
        super().__init__()
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, stride=1, padding=1, bias=False)
        in_width = widths[0]
        for index, (width, stride) in enumerate(zip(widths, strides, strict=True), start=1):
            stage = nn.Sequential(PreActBlock(in_width, width, stride, out_shortcut),
                                  PreActBlock(width, width, 1, out_shortcut))
            self.add_module(f"layer{index}", stage)
            in_width = width
        self.bn = nn.BatchNorm2d(widths[-1]) if bn_before_fc else None
        self.linear = nn.Linear(widths[-1], num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 32, 32) -> (B, K)
        out = self.conv1(x)  # (B, 64, 32, 32)
        for index in range(1, 5):
            out = getattr(self, f"layer{index}")(out)  # ... -> (B, 512, 4, 4)
        if self.bn is not None:
            out = F.relu(self.bn(out))
        out = F.avg_pool2d(out, 4).flatten(1)  # (B, 512)
        return self.linear(out)


def preact_resnet18(num_outputs: int, input_shape: InputShape, *, bn_before_fc: bool = False,
                    out_shortcut: bool = False, normalization: str = "dataset") -> nn.Module:
    """RobustBench's ``PreActResNet18`` (``bn_before_fc``, ``out_shortcut`` as theirs)."""
    _check_pooling("preact_resnet18", input_shape, halve=_ceil_half, halvings=3, window=4)
    net = PreActResNet18(num_outputs, input_shape,
                         bn_before_fc=_flag("bn_before_fc", bn_before_fc),
                         out_shortcut=_flag("out_shortcut", out_shortcut))
    return _take_raw_inputs(net) if _normalization(normalization) == "none" else net


# --------------------------------------------------------------------------- WideResNet (TRADES)


class WideBlock(nn.Module):
    """BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> [dropout] -> conv3x3, plus the shortcut.

    Where the width stays, the shortcut is the raw input; where it changes, a 1x1 conv
    (``convShortcut``, RobustBench's name) of the activated input.
    """

    convShortcut: nn.Conv2d | None

    def __init__(self, in_width: int, out_width: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.bn1 = nn.BatchNorm2d(in_width)
        self.conv1 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, stride=1, padding=1, bias=False)
        self.convShortcut = None
        if in_width != out_width:
            self.convShortcut = nn.Conv2d(in_width, out_width, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H/s, W/s)
        activated = F.relu(self.bn1(x))
        skip = x if self.convShortcut is None else self.convShortcut(activated)
        out = F.relu(self.bn2(self.conv1(activated)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        return skip + self.conv2(out)


class WideStage(nn.Module):
    """``blocks`` WideBlocks under ``layer`` (RobustBench's ``NetworkBlock``); the first strides."""

    def __init__(self, blocks: int, in_width: int, out_width: int, stride: int,
                 dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBlock(in_width if i == 0 else out_width, out_width, stride if i == 0 else 1, dropout)
            for i in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """conv3x3 16 -> 3 stages of n blocks (16k, 32k, 64k; strides 1, 2, 2) -> BN -> ReLU
    -> 8x8 average pool -> fc, with depth = 6n + 4 and k = ``widen_factor``."""

    sub_block1: WideStage | None

    def __init__(self, num_outputs: int, input_shape: InputShape, *, depth: int = 28,
                 widen_factor: int = 10, dropout: float = 0.0, sub_block1: bool = False,
                 bias_last: bool = True) -> None:
        super().__init__()
        blocks = _wrn_blocks(depth)
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = WideStage(blocks, widths[0], widths[1], 1, dropout)
        # TRADES' WRN-34-10 carries a second first stage; its weights are saved, never used
        self.sub_block1 = WideStage(blocks, widths[0], widths[1], 1, dropout) if sub_block1 else None
        self.block2 = WideStage(blocks, widths[1], widths[2], 2, dropout)
        self.block3 = WideStage(blocks, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_outputs, bias=bias_last)
        self._init_weights()

    def _init_weights(self) -> None:
        """He init of the convs (fan out), BN at identity, a zero classifier bias (TRADES')."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 32, 32) -> (B, K)
        out = self.conv1(x)  # (B, 16, 32, 32)
        out = self.block3(self.block2(self.block1(out)))  # (B, 64k, 8, 8)
        out = F.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8).flatten(1)  # (B, 64k)
        return self.fc(out)


def wide_resnet(num_outputs: int, input_shape: InputShape, *, depth: int = 28,
                widen_factor: int = 10, dropout: float = 0.0, sub_block1: bool = False,
                bias_last: bool = True, normalization: str = "dataset") -> nn.Module:
    """RobustBench's ``WideResNet`` (WRN-``depth``-``widen_factor``; ``dropout`` is their dropRate)."""
    _check_pooling("wide_resnet", input_shape, halve=_ceil_half, halvings=2, window=8)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), not {dropout!r}")
    net = WideResNet(num_outputs, input_shape, depth=depth,
                     widen_factor=_count("widen_factor", widen_factor), dropout=float(dropout),
                     sub_block1=_flag("sub_block1", sub_block1),
                     bias_last=_flag("bias_last", bias_last))
    return _take_raw_inputs(net) if _normalization(normalization) == "none" else net


# --------------------------------------------------------------------------- DM's WideResNet


def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow's 'SAME' padding for a 3x3 conv: 1 all round, or right/bottom only at stride 2."""
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class DMBlock(nn.Module):
    """act(BN) -> 'SAME' conv3x3(stride) -> act(BN) -> conv3x3, plus the shortcut.

    As ``WideBlock`` but with TensorFlow's padding, a chosen activation and the names
    ``batchnorm_0/1``, ``conv_0/1``, ``shortcut`` of DeepMind's code.
    """

    shortcut: nn.Conv2d | None

    def __init__(self, in_width: int, out_width: int, stride: int,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"unsupported stride {stride}")
        self.stride = stride
        self.batchnorm_0 = nn.BatchNorm2d(in_width)
        self.relu_0 = activation()
        self.conv_0 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_width)
        self.relu_1 = activation()
        self.conv_1 = nn.Conv2d(out_width, out_width, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if in_width != out_width:
            self.shortcut = nn.Conv2d(in_width, out_width, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H/s, W/s)
        activated = self.relu_0(self.batchnorm_0(x))
        skip = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv_0(_same_pad(activated, self.stride))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return skip + out


class DMStage(nn.Module):
    """``blocks`` DMBlocks under ``block`` (DeepMind's ``_BlockGroup``); the first strides."""

    def __init__(self, blocks: int, in_width: int, out_width: int, stride: int,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        self.block = nn.Sequential(*[
            DMBlock(in_width if i == 0 else out_width, out_width, stride if i == 0 else 1, activation)
            for i in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DMWideResNet(nn.Module):
    """[zero pad] -> (x - mean) / std -> conv3x3 16 -> 3 stages (16w, 32w, 64w; strides 1, 2, 2)
    -> act(BN) -> 8x8 average pool -> logits. ``mean``/``std`` are buffers kept out of the
    state_dict (``persistent=False``), as in RobustBench: a checkpoint holds only weights."""

    mean: torch.Tensor  # (C, 1, 1)
    std: torch.Tensor  # (C, 1, 1)

    def __init__(self, num_outputs: int, input_shape: InputShape, *, depth: int = 28,
                 width: int = 10, activation: type[nn.Module] = nn.ReLU,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
                 padding: int = 0) -> None:
        super().__init__()
        channels = input_shape[0]
        blocks = _wrn_blocks(depth)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(channels, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(channels, 1, 1),
                             persistent=False)
        self.padding = padding
        widths = (16, 16 * width, 32 * width, 64 * width)
        self.init_conv = nn.Conv2d(channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.layer = nn.Sequential(*[
            DMStage(blocks, widths[i], widths[i + 1], stride, activation)
            for i, stride in enumerate((1, 2, 2))])
        self.batchnorm = nn.BatchNorm2d(widths[3])
        self.relu = activation()
        self.logits = nn.Linear(widths[3], num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 32, 32) in [0, 1] -> (B, K)
        if self.padding > 0:
            x = F.pad(x, (self.padding,) * 4)  # zeros in pixel space, before normalising
        out = self.init_conv((x - self.mean) / self.std)  # (B, 16, H, W)
        out = self.layer(out)  # (B, 64w, H/4, W/4)
        out = self.relu(self.batchnorm(out))
        out = F.avg_pool2d(out, 8).flatten(1)  # (B, 64w)
        return self.logits(out)


def _statistics(name: str, value: Any, channels: int) -> tuple[float, ...]:
    values = (value,) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if (not isinstance(values, Sequence) or isinstance(values, str) or len(values) != channels
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"{name} must be {channels} number(s), one per input channel, "
                         f"not {value!r}")
    if name == "std" and any(v <= 0 for v in values):
        raise ValueError(f"std must be positive, not {value!r}")
    return tuple(float(v) for v in values)


def dm_wide_resnet(num_outputs: int, input_shape: InputShape, *, depth: int = 28, width: int = 10,
                   activation: str = "relu", mean: Any = CIFAR10_MEAN, std: Any = CIFAR10_STD,
                   padding: int = 0, num_input_channels: int | None = None) -> nn.Module:
    """RobustBench's ``DMWideResNet``; normalises its inputs itself, so none goes in front.

    ``num_input_channels`` defaults to the data's and must agree with it when given.
    """
    channels = input_shape[0]
    if num_input_channels is not None and num_input_channels != channels:
        raise ValueError(f"num_input_channels is {num_input_channels!r} but the data has "
                         f"{channels} channel(s)")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
    padding = _count("padding", padding, minimum=0)
    _check_pooling("dm_wide_resnet", input_shape, halve=_floor_half, halvings=2, window=8,
                   padding=padding)
    net = DMWideResNet(num_outputs, input_shape, depth=depth, width=_count("width", width),
                       activation=ACTIVATIONS[activation],
                       mean=_statistics("mean", mean, channels),
                       std=_statistics("std", std, channels), padding=padding)
    return _take_raw_inputs(net)
