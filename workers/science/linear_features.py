"""E3's science: linear classifiers on binary MNIST, the pixels they use, and why (Sec. 2.3).

A linear classifier f(x) = w.x + b on 784 pixels makes the paper's robust / non-robust feature
story visible on real data. Everything here is exact and deterministic:

- Training is full-batch gradient descent on the mean logistic loss softplus(-y f(x)) from
  w = 0, b = 0 (the paper's "100 epochs of gradient descent"). The problem is convex and the
  data fixed, so no random number is drawn. Starting from 0 also keeps pixels that no image
  lights (the MNIST border) at exactly zero weight instead of leaving initialisation noise there.
- Adversarial training replaces each input by its exact l_inf worst case inside [0, 1] for the
  current w (``exact_linear_attack``: each pixel moves eps against y sign(w_i), clipped); by
  Danskin's theorem the gradient at that point is a gradient of the robust loss.
- Evaluation at eps > 0 uses the same exact worst case, so "adversarial accuracy" is the
  true robust accuracy of the model, not a bound from an attack.

Tensors are float64 on the caller's device: (N, D) inputs flattened to D = 784 pixels, (N,)
labels in {-1, +1}. Figures are PNG bytes drawn with matplotlib's object API (no pyplot state).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from contract.records import Cancelled
from workers.science.attacks import exact_linear_attack
from workers.science.datasets import ImageTensorDataset
from workers.science.losses import classification_loss, correct

IMAGE_SIDE = 28
"""Binary MNIST images are 28 x 28, so w is shown as a 28 x 28 picture (Fig. 2a)."""
DIVERGING_CMAP = "RdBu_r"
"""Blue for negative weights (evidence of '5'), red for positive ('7'), white at 0."""


@dataclass(frozen=True)
class LabelledData:
    """A whole split held at once: ``x`` (N, D) float64 in [0, 1], ``y`` (N,) int64 in {-1, +1}."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class LinearWeights:
    """f(x) = w.x + b: ``w`` (D,) and ``b`` () float64."""

    w: torch.Tensor
    b: torch.Tensor

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) for inputs (N, D): shape (N,)."""
        return x @ self.w + self.b

    @property
    def l1(self) -> float:
        """||w||_1, the last column of Table 4."""
        return float(self.w.abs().sum())


EpochHook = Callable[[int, float], None]
"""(epochs done, mean training loss of the epoch just taken) -> None."""


def labelled_data(dataset: Dataset, device: torch.device) -> LabelledData:
    """A binary-MNIST split as one float64 matrix of flattened images on ``device``."""
    if not isinstance(dataset, ImageTensorDataset):
        kind = type(dataset).__name__
        raise TypeError(f"full-batch training needs an in-memory dataset, got {kind}")
    images, labels = dataset.tensors()  # (N, 1, 28, 28), (N,)
    if not bool(((labels == 1) | (labels == -1)).all()):
        raise ValueError("a linear classifier with one output needs labels in {-1, +1}")
    return LabelledData(images.flatten(1).to(device, torch.float64), labels.to(device))


# --------------------------------------------------------------------------- correlations


def pixel_label_correlation(data: LabelledData) -> torch.Tensor:
    """Pearson correlation of each pixel with the label over ``data``: (D,) in [-1, 1].

    A pixel that never changes (the MNIST border) carries no information: its correlation is
    0 rather than undefined.
    """
    x_centred = data.x - data.x.mean(dim=0)  # (N, D)
    y = data.y.to(torch.float64)
    y_centred = y - y.mean()  # (N,)
    covariance = y_centred @ x_centred / len(data)  # (D,)
    spread = x_centred.pow(2).mean(dim=0).sqrt() * y_centred.pow(2).mean().sqrt()  # (D,)
    return torch.where(spread > 0, covariance / spread.clamp_min(1e-300), torch.zeros_like(spread))


def top_pixels(correlation: torch.Tensor, k: int) -> torch.Tensor:
    """(D,) bool mask of the ``k`` pixels of largest |correlation| (ties: lower index first).

    The magnitude counts, not the sign: pixels typical of a '5' (negative correlation) are as
    informative as those typical of a '7'.
    """
    if not 1 <= k <= correlation.numel():
        raise ValueError(f"k must be in [1, {correlation.numel()}], got {k}")
    order = torch.sort(correlation.abs(), descending=True, stable=True).indices
    mask = torch.zeros_like(correlation, dtype=torch.bool)
    mask[order[:k]] = True
    return mask


@dataclass(frozen=True)
class WeightProfile:
    """Where a model puts its weight relative to the pixels' correlation with the label (Fig. 2b).

    ``low_mass_fraction``: share of ||w||_1 on pixels with |correlation| < threshold.
    ``low_peak_ratio``: the largest |w_i| among those pixels over the largest |w_i| overall; a
    model that puts (almost) no weight below the threshold has both near 0.
    """

    threshold: float
    low_pixels: int
    low_mass_fraction: float
    low_peak_ratio: float


def weight_profile(weights: LinearWeights, correlation: torch.Tensor,
                   threshold: float) -> WeightProfile:
    """Measure the paper's claim that robust models leave weakly correlated pixels unused."""
    magnitude = weights.w.abs()
    low = correlation.abs() < threshold
    total, peak = float(magnitude.sum()), float(magnitude.max())
    low_mass = float(magnitude[low].sum())
    low_peak = float(magnitude[low].max()) if bool(low.any()) else 0.0
    return WeightProfile(
        threshold=threshold,
        low_pixels=int(low.sum()),
        low_mass_fraction=low_mass / total if total > 0 else 0.0,
        low_peak_ratio=low_peak / peak if peak > 0 else 0.0,
    )


# --------------------------------------------------------------------------- training


def worst_case_inputs(weights: LinearWeights, data: LabelledData, eps: float) -> torch.Tensor:
    """The exact l_inf worst case of every input inside [0, 1]: (N, D); ``data.x`` at eps 0."""
    if eps == 0:
        return data.x
    return exact_linear_attack((weights.w, weights.b), data.x, data.y, norm="linf", eps=eps).x_adv


def train_linear(
    data: LabelledData,
    *,
    epochs: int,
    lr: float,
    eps: float = 0.0,
    mask: torch.Tensor | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: EpochHook | None = None,
) -> LinearWeights:
    """Full-batch gradient descent on the mean logistic loss, standard (eps 0) or adversarial.

    Args:
        data: the training split.
        epochs: gradient steps, each on the whole split.
        lr: step size.
        eps: l_inf radius of the exact inner maximisation; 0 is standard training.
        mask: (D,) bool; only these weights may move (the others stay 0, so the model sees only
            these pixels: Fig. 2(c)'s training on the top-k pixels). None: every pixel.
        should_stop: checked before every epoch; True raises ``Cancelled``.
        on_epoch: told the epoch count and loss after every step.

    Returns:
        The weights after the last step.
    """
    dimension = data.x.shape[1]
    step_mask = (torch.ones(dimension, dtype=torch.float64, device=data.x.device) if mask is None
                 else mask.to(data.x.device, torch.float64))  # (D,)
    w = torch.zeros(dimension, dtype=torch.float64, device=data.x.device, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, device=data.x.device, requires_grad=True)
    for epoch in range(epochs):
        if should_stop is not None and should_stop():
            raise Cancelled(f"linear training cancelled after {epoch} of {epochs} epochs")
        x = worst_case_inputs(LinearWeights(w.detach(), b.detach()), data, eps)  # (N, D)
        loss = classification_loss(x @ w + b, data.y, reduction="mean")
        grad_w, grad_b = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            w -= lr * step_mask * grad_w
            b -= lr * grad_b
        if on_epoch is not None:
            on_epoch(epoch + 1, float(loss.detach()))
    return LinearWeights(w.detach(), b.detach())


def correct_under_attack(weights: LinearWeights, data: LabelledData, eps: float) -> torch.Tensor:
    """Per-example correctness (N,) bool, clean at eps 0, at the exact worst case otherwise.

    The worst case never scores better than the clean input (x lies in the ball), so correct
    here implies correct on the clean input.
    """
    return correct(weights.scores(worst_case_inputs(weights, data, eps)), data.y)


# --------------------------------------------------------------------------- figures


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def weight_image(weights: LinearWeights, title: str) -> bytes:
    """Fig. 2(a): w as a 28 x 28 image, a diverging colour map centred at 0 (PNG bytes)."""
    image = weights.w.detach().cpu().reshape(IMAGE_SIDE, IMAGE_SIDE).numpy()
    limit = float(abs(image).max()) or 1.0
    figure = _new_figure(4.0, 3.4)
    axes = figure.add_subplot()
    shown = axes.imshow(image, cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit)
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.colorbar(shown, ax=axes, label="weight  (− '5'   + '7')")
    return _png(figure)


def correlation_figure(correlation: torch.Tensor, models: Sequence[tuple[str, LinearWeights]],
                       threshold: float) -> bytes:
    """Fig. 2(b): each pixel's weight against its correlation with the label, one panel a model.

    Panels have their own weight scale (the standard model's weights are several times
    larger); the band |correlation| < threshold is shaded.
    """
    corr = correlation.detach().cpu().numpy()
    figure = _new_figure(4.0 * len(models), 3.6)
    for index, (label, weights) in enumerate(models):
        axes = figure.add_subplot(1, len(models), index + 1)
        axes.axvspan(-threshold, threshold, color="0.9", zorder=0,
                     label=f"|corr| < {threshold:g}")
        axes.axhline(0, color="0.5", linewidth=0.8)
        axes.scatter(corr, weights.w.detach().cpu().numpy(), s=6, alpha=0.6)
        axes.set_xlabel("pixel-label correlation")
        axes.set_ylabel("weight")
        axes.set_title(label, fontsize=10)
        axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


@dataclass(frozen=True)
class TopKPoint:
    """Fig. 2(c): test accuracies of standard training on the top ``k`` pixels."""

    k: int
    standard: float
    adversarial: float


def topk_figure(points: Sequence[TopKPoint], eps: float,
                reference: tuple[float, float] | None = None) -> bytes:
    """Fig. 2(c): standard and adversarial accuracy against k (log scale), PNG bytes.

    ``reference`` (standard, adversarial accuracy of adversarial training on every pixel) is
    drawn as dashed lines: the paper's "training on the top pixels comes close to it".
    """
    ks = [p.k for p in points]
    figure = _new_figure(5.6, 4.0)
    axes = figure.add_subplot()
    axes.plot(ks, [p.standard for p in points], marker="o", label="standard accuracy")
    axes.plot(ks, [p.adversarial for p in points], marker="s",
              label=f"adversarial accuracy (ε = {eps:g})")
    if reference is not None:
        axes.axhline(reference[0], color="C0", linestyle="--", linewidth=1,
                     label="adversarial training: standard")
        axes.axhline(reference[1], color="C1", linestyle="--", linewidth=1,
                     label="adversarial training: adversarial")
    if len(ks) > 1 and min(ks) > 0 and max(ks) / min(ks) >= 10:
        axes.set_xscale("log")
    axes.set_xlabel("k (most label-correlated pixels used)")
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    return _png(figure)


def accuracy(bits: torch.Tensor) -> float:
    """The fraction of ``True`` in per-example correctness bits."""
    return float(bits.double().mean())
