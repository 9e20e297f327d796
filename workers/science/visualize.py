"""E4-E6 (Sec. 3 of Tsipras et al.): what robust models' input gradients look like, in numbers too.

The paper makes three qualitative claims and shows pictures for them:

- **Large-eps adversarial examples** (Figs. 3, 6, 7; radii of Table 3, ``LARGE_EPS``): targeted
  PGD far outside the training ball turns a test image into something that *looks like* the
  target class for a robust model, and into noise for a standard one.
- **Interpolations** (Fig. 4): the straight line from the image to its large-eps example is a
  perceptually smooth morph between the classes for a robust model.
- **Loss gradients** (Figs. 5, 8): the gradient of the loss with respect to the pixels follows
  the edges and shapes of the image for a robust model, and looks like noise for a standard one.

Pictures cannot be checked by a test, so each claim that can be measured gets a number:

- ``target_agreement``: of the large-eps examples that reach the target on the attacked
  model, the fraction that an *independently trained* model also classifies as the target.
  An example that really looks like the target should convince a model that never saw the
  attack. The paper predicts a higher value for robust source models. Conditioning on the
  attack's success keeps a robust model's resistance (fewer examples reach the target at all,
  reported as ``large_eps_success``) from counting against it. The judge is whatever model
  the spec names. A standard judge mostly measures how well non-robust perturbations transfer
  between standard models (on 2000 MNIST digits it agreed with 81-88% of a standard model's
  examples, and no less with a robust model's); an l_2-robust judge trained with another seed
  is moved much less by such noise, and with it the paper's order shows (0.34-0.42 for a
  standard source against 0.59-0.63 for an l_2-robust one, two seeds and two attacks; see
  ``tests/science/test_visualize.py``). The paper specs use a robust judge.
- ``gradient_edge_alignment``: the Pearson correlation, per image, between the gradient's
  magnitude per pixel and the Sobel edge magnitude of the image, averaged over images. The
  paper predicts a higher value for robust models ("they align almost perfectly with
  perceptually relevant features (such as the boundaries)").

The interpolation claim ("perceptually smooth") has no measure here beyond the pictures.

Conventions: images are ``(B, C, H, W)`` tensors in [0, 1]; every eps is in pixel space.
Pictures are returned as PNG bytes (matplotlib's Agg canvas, no pyplot state).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from contract.catalog import large_eps_radii
from contract.datasets import DATASETS
from contract.specs.values import NormName
from contract.specs.visualize import LargeEpsAttack
from workers.science.attacks import pgd
from workers.science.attacks.common import attack_mode
from workers.science.losses import classification_loss, predict

# --------------------------------------------------------------------------- Table 3

LARGE_EPS: dict[str, dict[str, float]] = {
    name: dict(info.large_eps) for name, info in DATASETS.items() if info.large_eps
}
"""Table 3 of the paper: the radii of the large-eps examples, in pixel space ([0, 1] images),
from the catalog (binary MNIST and Fashion-MNIST take MNIST's: same pixel scale and size)."""
LARGE_EPS_STEPS = 100
"""PGD iterations of the default large-eps attacks (the paper does not give a number)."""

TargetRule = Literal["next", "random"]
GRADIENT_CLIP_SIGMAS = 3.0
"""Figs. 5 and 8: gradients are clipped to +-3 standard deviations before rescaling."""


def default_large_eps_attacks(dataset: str) -> list[LargeEpsAttack]:
    """The Table 3 attacks of ``dataset`` (l_inf then l_2), ``LARGE_EPS_STEPS`` steps each."""
    radii = large_eps_radii(dataset)
    if not radii:
        raise ValueError(f"Table 3 gives no large-eps radii for {dataset!r}: list the attacks "
                         "(attacks: [{norm: linf, eps: ...}])")
    return [LargeEpsAttack(norm=cast(NormName, norm), eps=eps, steps=LARGE_EPS_STEPS)
            for norm, eps in radii.items()]


# --------------------------------------------------------------------------- large eps (E4)


def target_classes(y: torch.Tensor, num_classes: int, *, rule: TargetRule,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A target class other than the true one for every example.

    ``"next"``: (y + 1) mod K, the same target for every image of a class; ``"random"``: a
    uniform other class from ``generator`` (on ``y``'s device). The binary -1/+1 task has one
    other class: -y.
    """
    if num_classes == 2:
        return -y
    if rule == "next":
        return (y + 1) % num_classes
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def large_eps_examples(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                       attack: LargeEpsAttack) -> torch.Tensor:
    """Targeted PGD towards ``target`` inside a ball much larger than the training one (Sec. 3.1).

    The attack starts from the image itself (no random start: a uniform point of an l_inf
    ball of radius 0.3 is already visible noise), follows the negative gradient of the loss
    of the target class, and returns per example the best iterate (on target first, then the
    lowest target loss). Shapes: x (B, C, H, W) in [0, 1], target (B,); output like x.
    """
    return pgd(model, x, target, norm=attack.norm, eps=attack.eps,
               step_size=attack.resolved_step_size, steps=attack.steps, random_start=False,
               targeted=True)


def predicted_as(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether ``model`` (in eval mode, without gradients) predicts ``labels``."""
    with attack_mode(model), torch.no_grad():
        return predict(model(x)) == labels


# --------------------------------------------------------------------------- interpolation (E5)


def interpolate(x: torch.Tensor, x_adv: torch.Tensor, points: int) -> torch.Tensor:
    """``points`` images on the segment from ``x`` to ``x_adv``, both ends included (Fig. 4).

    Point i is (1 - a_i) x + a_i x_adv with a_i = i / (points - 1); written this way the ends
    are exactly ``x`` and ``x_adv``. Shapes: (B, C, H, W) twice -> (B, points, C, H, W).
    """
    if points < 2:
        raise ValueError(f"an interpolation needs at least its two ends, got points={points}")
    alphas = torch.linspace(0, 1, points, device=x.device, dtype=x.dtype).view(1, points, 1, 1, 1)
    return (1 - alphas) * x.unsqueeze(1) + alphas * x_adv.unsqueeze(1)


# --------------------------------------------------------------------------- gradients (E6)


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of each example's own loss (true label) with respect to its pixels (Fig. 5).

    The model runs in eval mode with frozen parameters and is restored afterwards (as in the
    attacks). Shapes: x (B, C, H, W), y (B,) -> (B, C, H, W).
    """
    with attack_mode(model):
        x = x.detach().clone().requires_grad_(True)
        losses = classification_loss(model(x), y)  # (B,)
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return grad


def normalize_gradient(grad: torch.Tensor, sigmas: float = GRADIENT_CLIP_SIGMAS) -> torch.Tensor:
    """The paper's display recipe: clip to +-``sigmas`` standard deviations, rescale to [0, 1].

    Per image, sigma is the (population) standard deviation of its gradient values; values
    are clipped to [-sigmas*sigma, +sigmas*sigma] and mapped linearly onto [0, 1], so a zero
    gradient is 0.5 and the sign is kept (above 0.5 raises the loss). An image whose gradient
    is constant has sigma 0 and is shown as all 0.5. Shapes: (B, C, H, W) -> (B, C, H, W).
    """
    per_image = (-1, *([1] * (grad.dim() - 1)))
    sigma = grad.flatten(1).std(dim=1, correction=0).view(per_image)  # (B, 1, 1, 1)
    bound = sigmas * sigma
    safe_bound = torch.where(bound > 0, bound, torch.ones_like(bound))
    scaled = torch.where(bound > 0, grad.clamp(-bound, bound) / safe_bound, torch.zeros_like(grad))
    return (scaled + 1) / 2


SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
"""The Sobel operator's horizontal derivative; its transpose is the vertical one."""


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel edge magnitude of each image's grey level (channel mean), (B, C, H, W) -> (B, H, W).

    Borders are padded by replication, so the frame of an image is no edge.
    """
    grey = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    kernels = torch.stack([SOBEL_X, SOBEL_X.T]).unsqueeze(1).to(x)  # (2, 1, 3, 3)
    derivatives = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)  # (B, 2, H, W)
    return derivatives.pow(2).sum(dim=1).sqrt()


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per example of two equally shaped batches, (B, ...) x2 -> (B,).

    An example where either side is constant has no defined correlation; it counts as 0 (no
    alignment), which is what a vanished gradient shows.
    """
    a = a.flatten(1) - a.flatten(1).mean(dim=1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(dim=1, keepdim=True)
    scale = (a.pow(2).sum(dim=1) * b.pow(2).sum(dim=1)).sqrt()
    covariance = (a * b).sum(dim=1)
    return torch.where(scale > 0, covariance / torch.where(scale > 0, scale, 1.0), 0.0)


def gradient_edge_alignment(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image: Pearson correlation of |gradient| (l_2 over channels) with the Sobel edges of x.

    Near 1 when the gradient sits on the image's edges, near 0 when it is unrelated noise.
    Shapes: grad and x (B, C, H, W) -> (B,).
    """
    return pearson(grad.norm(dim=1), sobel_magnitude(x))


# --------------------------------------------------------------------------- pictures

Cell = np.ndarray
"""One picture of a grid: (H, W, 3) floats in [0, 1]."""
DIVERGING_COLORMAP = "RdBu"
"""Figs. 5 and 8 (MNIST): blue for positive and red for negative gradient; RdBu maps 1 to blue."""
DPI = 100
MIN_CELL_PIXELS = 72
"""Small images (MNIST's 28 pixels) are enlarged by a whole factor to at least this size."""
GAP_PIXELS = 6
"""White space between cells, in figure pixels."""
MARGIN_PIXELS = {"left": 8, "top": 8, "right": 8, "bottom": 8, "column_titles": 20, "title": 28}
CHAR_PIXELS = {"label": 6, "title": 7}
"""About how wide one character of a row title (8 pt) and of the figure title (10 pt) is."""


def image_cells(x: torch.Tensor) -> list[Cell]:
    """Images (B, C, H, W) in [0, 1] as RGB cells (grey images repeated on three channels)."""
    rgb = x.detach().float().cpu().clamp(0, 1)
    if rgb.shape[1] == 1:
        rgb = rgb.repeat(1, 3, 1, 1)
    return list(rgb.permute(0, 2, 3, 1).numpy())


def gradient_cells(grad: torch.Tensor) -> list[Cell]:
    """Gradients (B, C, H, W) as RGB cells, following the paper's figures.

    Grey-level data (MNIST): the signed gradient through a diverging colour map, blue
    positive, red negative, white zero. Colour data (CIFAR-10, ImageNet): the +-3 sigma
    clipped gradient rescaled to [0, 1] (``normalize_gradient``) shown as an RGB image.
    """
    normalized = normalize_gradient(grad.detach().float().cpu())  # (B, C, H, W) in [0, 1]
    if normalized.shape[1] != 1:
        return list(normalized.permute(0, 2, 3, 1).numpy())
    colormap = colormaps[DIVERGING_COLORMAP]
    return [np.asarray(colormap(image[0].numpy()))[..., :3] for image in normalized]


def mosaic(rows: Sequence[Sequence[Cell]], scale: int, gap: int) -> np.ndarray:
    """The cells enlarged ``scale`` times (nearest neighbour) on a white sheet, ``gap`` apart.

    Returns (R * (H s + gap) - gap, C * (W s + gap) - gap, 3) floats in [0, 1].
    """
    if not rows or not rows[0]:
        raise ValueError("a grid needs at least one cell")
    n_cols = len(rows[0])
    if any(len(row) != n_cols for row in rows):
        raise ValueError("every row of a grid needs the same number of cells")
    height, width = rows[0][0].shape[0] * scale, rows[0][0].shape[1] * scale
    sheet = np.ones((len(rows) * (height + gap) - gap, n_cols * (width + gap) - gap, 3))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            top, left = r * (height + gap), c * (width + gap)
            enlarged = np.clip(cell, 0, 1).repeat(scale, axis=0).repeat(scale, axis=1)
            sheet[top : top + height, left : left + width] = enlarged
    return sheet


def grid_png(rows: Sequence[Sequence[Cell]], *, row_titles: Sequence[str] | None = None,
             column_titles: Sequence[str] | None = None, title: str | None = None) -> bytes:
    """A grid of equally sized cells as PNG bytes, with optional row, column and figure titles.

    One image drawn pixel for pixel (cells enlarged by a whole factor, so MNIST pixels stay
    square and sharp) with the titles around it: fast even for hundreds of cells.
    """
    cell_height, cell_width = rows[0][0].shape[:2] if rows and rows[0] else (0, 0)
    scale = max(1, -(-MIN_CELL_PIXELS // max(cell_height, cell_width, 1)))
    sheet = mosaic(rows, scale, GAP_PIXELS)
    m = MARGIN_PIXELS
    label_width = CHAR_PIXELS["label"] * max((len(t) for t in row_titles or []), default=0)
    left = m["left"] + (label_width + GAP_PIXELS if row_titles else 0)
    top = m["top"] + (m["column_titles"] if column_titles else 0) + (m["title"] if title else 0)
    title_width = CHAR_PIXELS["title"] * len(title or "") + m["left"] + m["right"]
    width = max(left + sheet.shape[1] + m["right"], title_width)
    height = top + sheet.shape[0] + m["bottom"]
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((left / width, m["bottom"] / height, sheet.shape[1] / width,
                            sheet.shape[0] / height))
    axes.imshow(sheet, interpolation="nearest")
    axes.set_axis_off()
    step_x, step_y = cell_width * scale + GAP_PIXELS, cell_height * scale + GAP_PIXELS
    for c, text in enumerate(column_titles or []):
        axes.text(c * step_x + cell_width * scale / 2, -GAP_PIXELS, text, ha="center",
                  va="bottom", fontsize=8)
    for r, text in enumerate(row_titles or []):
        axes.text(-GAP_PIXELS, r * step_y + cell_height * scale / 2, text, ha="right",
                  va="center", fontsize=8)
    if title:
        figure.text(0.5, 1 - m["top"] / height, title, ha="center", va="top", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def class_name(names: Sequence[str], label: int) -> str:
    """The name of a class label; the binary task's -1/+1 labels name the first/second class."""
    return names[(label + 1) // 2] if len(names) == 2 else names[label]
