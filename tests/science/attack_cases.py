"""Models and inputs shared by the tests of APGD, FAB, Square and AutoAttack.

``train_small_cnn`` trains a tiny CNN on a few hundred real MNIST digits, standard or with PGD
adversarial training at l_inf 0.3 (eps ramped up over the first epochs), in about ten
seconds on one CPU thread: real enough that attacks of different strength disagree on it, small
enough for every test session. The ``robust_small_cnn`` fixture (``conftest.py``) trains it once
per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from contract.specs.data import DatasetConfig
from workers.science.attacks import pgd
from workers.science.datasets import load_dataset

SLACK = 1e-5
"""Relative rounding allowed on a perturbation's norm ((x0 + delta) - x0 is not delta)."""


def mlp(num_outputs: int = 10, seed: int = 0) -> nn.Module:
    """A ReLU network on (B, 1, 4, 4) inputs with unit-variance weights: small eps matter."""
    torch.manual_seed(seed)
    hidden, out = nn.Linear(16, 32), nn.Linear(32, num_outputs)
    with torch.no_grad():
        for layer in (hidden, out):
            layer.weight.normal_(0.0, 1.0)
    return nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), out)


def batch(n: int = 32, seed: int = 0) -> torch.Tensor:
    """Random images (n, 1, 4, 4) in [0, 1] with a few pixels at 0 and 1 (the box matters)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 4, 4), generator=g)
    x[:, 0, 0, :2] = torch.tensor([0.0, 1.0])
    return x


def own_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own predictions, every fourth one changed: 75% clean accuracy."""
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    y[::4] = (y[::4] + 1) % logits.shape[1]
    return y


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def in_ball(norm: str, x: torch.Tensor, x0: torch.Tensor, eps: float) -> bool:
    """Every example of ``x`` within ``eps`` of ``x0`` (up to rounding) and inside [0, 1]."""
    size = norms(x - x0, norm)
    return (bool((size <= eps * (1 + SLACK) + 1e-7).all())
            and bool(x.min() >= 0) and bool(x.max() <= 1))


def within_own_ball(norm: str, seen: torch.Tensor, x: torch.Tensor, eps: float) -> bool:
    """Each row of ``seen`` (a subset of the examples, perturbed) lies in [0, 1] and within
    ``eps`` of its own clean image, the nearest one (the images are far apart)."""
    p = float("inf") if norm == "linf" else 2.0
    distances = torch.cdist(seen.flatten(1).double(), x.flatten(1).double(), p=p)
    return (bool((distances.min(dim=1).values <= eps * (1 + 1e-5) + 1e-7).all())
            and bool(seen.min() >= 0) and bool(seen.max() <= 1))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


class Recorder(nn.Module):
    """Wraps a model; keeps every input batch, the mode and whether grad was enabled."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []
        self.modes: list[bool] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.model(x)


class Quantised(nn.Module):
    """A non-differentiable input quantisation in front of a model: its gradient is zero almost
    everywhere, so gradient attacks stall while the decision is unchanged (masked gradients)."""

    def __init__(self, model: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.model = model
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * self.levels) / self.levels)


@dataclass(frozen=True)
class MnistCase:
    """A trained small CNN and held-out real digits (x (N, 1, 28, 28), y (N,))."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor


def mnist_tensors(data_dir: Path, n: int, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` real MNIST digits of a split as tensors."""
    cfg = DatasetConfig.model_validate({"name": "mnist", "train_subset": n, "test_subset": n})
    data = load_dataset(cfg, data_dir, train=train)
    xs, ys = zip(*(data[i] for i in range(n)), strict=True)
    return torch.stack(xs), torch.tensor(ys)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(),  # (B, 8, 14, 14)
        nn.Conv2d(8, 16, 5, stride=2, padding=2), nn.ReLU(),  # (B, 16, 7, 7)
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


def train_small_cnn(data_dir: Path, *, eps: float, epochs: int, n_train: int = 600,
                    n_test: int = 200, seed: int = 0) -> MnistCase:
    """Adam on ``n_train`` digits; with eps > 0 PGD-3 adversarial training, eps ramped from 0
    over the first three epochs (a tiny model collapses to one class without the ramp)."""
    x_train, y_train = mnist_tensors(data_dir, n_train, train=True)
    x_test, y_test = mnist_tensors(data_dir, n_test, train=False)
    torch.manual_seed(seed)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        radius = eps * min(1.0, epoch / 3)
        order = torch.randperm(n_train, generator=g)
        for start in range(0, n_train, 50):
            index = order[start:start + 50]
            xb, yb = x_train[index], y_train[index]
            if radius > 0:
                xb = pgd(model, xb, yb, norm="linf", eps=radius, step_size=radius / 2, steps=3,
                         best_iterate=False, generator=g)
            model.train()
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return MnistCase(model, x_test, y_test)
