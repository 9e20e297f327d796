"""The paper's four architectures, each a network on normalised inputs.

Builders take ``(num_outputs, input_shape)``; ``contract.catalog.MODELS`` names them and
``workers.science.models.build_model`` puts the dataset's normalisation in front.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

InputShape = tuple[int, int, int]
"""(C, H, W) of one input image."""


# --------------------------------------------------------------------------- linear


class LinearClassifier(nn.Linear):
    """f(x) = W flatten(x) + b: the paper's linear classifier for binary MNIST (Sec. 4, E3).

    A subclass of ``nn.Linear`` so ``weight`` and ``bias`` are where the exact linear attack
    and the weight pictures (Fig. 2a) expect them.
    """

    def __init__(self, num_outputs: int, input_shape: InputShape) -> None:
        super().__init__(math.prod(input_shape), num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return super().forward(x.flatten(1))


# --------------------------------------------------------------------------- MNIST CNN


class MnistCNN(nn.Module):
    """The TensorFlow-tutorial CNN of MadryLab's mnist_challenge (the paper's MNIST model).

    conv 32@5x5 'same' -> ReLU -> maxpool 2 -> conv 64@5x5 'same' -> ReLU -> maxpool 2
    -> fc 1024 -> ReLU -> fc K. For 28x28 inputs the flattened features are 7*7*64 = 3136.
    """

    def __init__(self, num_outputs: int, input_shape: InputShape) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 32, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * (height // 4) * (width // 4), 1024)
        self.fc2 = nn.Linear(1024, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 28, 28)
        x = self.pool(torch.relu(self.conv1(x)))  # (B, 32, 14, 14)
        x = self.pool(torch.relu(self.conv2(x)))  # (B, 64, 7, 7)
        x = torch.relu(self.fc1(x.flatten(1)))  # (B, 1024)
        return self.fc2(x)  # (B, K)


# --------------------------------------------------------------------------- CIFAR ResNet

CIFAR_RESNET_WIDTHS = (16, 16, 32, 64)
"""Init conv width, then the width of each of the three stages (the paper's 4 groups)."""
CIFAR_RESNET_UNITS = 5
CIFAR_RESNET_STRIDES = (1, 2, 2)
LEAKINESS = 0.1
"""MadryLab cifar10_challenge uses leaky ReLUs with slope 0.1 throughout."""


class PreActResidualUnit(nn.Module):
    """One pre-activation residual unit of MadryLab's cifar10_challenge ``_residual``.

    BN -> leaky ReLU -> conv3x3(stride) -> BN -> leaky ReLU -> conv3x3, plus a shortcut. The
    shortcut is the unit's input, or (``activate_before_residual``, first unit only) its
    activated input. When the width grows, the shortcut is average-pooled by the stride and
    zero-padded with (out - in) / 2 channels on each side (He et al.'s option A): no weights.
    """

    def __init__(self, in_width: int, out_width: int, stride: int, activate_before_residual: bool) -> None:
        super().__init__()
        self.activate_before_residual = activate_before_residual
        self.bn1 = nn.BatchNorm2d(in_width)
        self.conv1 = nn.Conv2d(in_width, out_width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_width)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, stride=1, padding=1, bias=False)
        self.shortcut_pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.pad_channels = (out_width - in_width) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H/s, W/s)
        activated = nn.functional.leaky_relu(self.bn1(x), LEAKINESS)
        shortcut = activated if self.activate_before_residual else x
        out = self.conv1(activated)
        out = self.conv2(nn.functional.leaky_relu(self.bn2(out), LEAKINESS))
        return out + self._shortcut(shortcut)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shortcut_pool(x)
        if self.pad_channels:
            x = nn.functional.pad(x, (0, 0, 0, 0, self.pad_channels, self.pad_channels))
        return x


class CifarResNet(nn.Module):
    """The paper's CIFAR-10 ResNet: MadryLab cifar10_challenge's model at widths (16, 16, 32, 64).

    Pre-activation units (not standard basic blocks), as in cifar10_challenge: an init conv of
    16 channels, three stages of 5 units (16, 32, 64 channels; strides 1, 2, 2), BN, leaky
    ReLU, global average pool, fc. 1 + 30 + 1 = 32 weight layers. Differences from the
    TensorFlow original: the normalisation is the dataset's mean/std (``Normalize``) instead of
    per-image standardisation; 'same' padding of the stride-2 convs is symmetric (PyTorch)
    rather than TensorFlow's bottom/right; BN epsilon is PyTorch's 1e-5 (TF's 1e-3).
    """

    def __init__(self, num_outputs: int, input_shape: InputShape) -> None:
        super().__init__()
        init_width, *stage_widths = CIFAR_RESNET_WIDTHS
        self.init_conv = nn.Conv2d(input_shape[0], init_width, 3, padding=1, bias=False)
        units: list[nn.Module] = []
        in_width = init_width
        for stage, (width, stride) in enumerate(zip(stage_widths, CIFAR_RESNET_STRIDES, strict=True)):
            for index in range(CIFAR_RESNET_UNITS):
                first = index == 0
                units.append(
                    PreActResidualUnit(in_width, width, stride if first else 1, first and stage == 0)
                )
                in_width = width
        self.units = nn.Sequential(*units)
        self.final_bn = nn.BatchNorm2d(in_width)
        self.fc = nn.Linear(in_width, num_outputs)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convolutions with fan-out, as the TF original's stddev sqrt(2 / (k*k*out))."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32)
        x = self.units(self.init_conv(x))  # (B, 64, 8, 8)
        x = nn.functional.leaky_relu(self.final_bn(x), LEAKINESS)
        return self.fc(x.mean(dim=(2, 3)))  # (B, 64) -> (B, K)


# --------------------------------------------------------------------------- ResNet-50


def resnet50(num_outputs: int, input_shape: InputShape) -> nn.Module:
    """torchvision's ResNet-50, untrained; its first conv adapted when the input is not RGB."""
    net = torchvision.models.resnet50(weights=None, num_classes=num_outputs)
    if input_shape[0] != 3:
        net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net
