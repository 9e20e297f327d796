"""E1: the paper's theoretical distribution D(p, d, eta) and linear classifiers on it.

Sec. 2.1-2.2 and Appendices B-C of Tsipras et al. build the trade-off between standard accuracy
and l_inf robustness on one robust feature ``x1`` (agrees with the label with probability ``p``)
and ``d`` weak Gaussian features ``x2..x_{d+1} ~ N(eta*y, 1)``. This module samples that
distribution, defines the three classifiers the paper discusses (``f_avg`` of eq. 4, the
soft-margin SVM of eq. 5, logistic regression), trains them normally or against the exact l_inf
worst case, evaluates them exactly, and computes every closed form and bound the paper states.

Conventions:
- A classifier is ``sign(w.x + b)``. The bias is not perturbed by the adversary, so the exact
  l_inf worst case ``y(w.x + b) - eps*||w||_1`` excludes it from the norm; it is not regularised
  either. It is there so that the constant classifier (the optimum once eps >= 2p - 1, see
  REPRODUCTION.md) predicts a class and scores about 50% instead of a tie.
- An example counts as correct only if its (worst-case) margin is strictly positive: a tie is an
  error, which is the conservative reading for robustness.
- Features are unbounded reals, so the worst case has no box constraint (unlike pixels).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from contract import catalog
from contract.catalog import TheoryModelInfo
from contract.records import Cancelled
from contract.specs.kinds import TheoryDistribution

# --------------------------------------------------------------------------- the distribution


@dataclass(frozen=True)
class Sample:
    """Draws from D(p, d, eta): ``x`` (n, d+1) with the robust feature in column 0, ``y`` (n,)."""

    x: torch.Tensor
    y: torch.Tensor
    """Labels as floats in {-1, +1}, so that ``y * score`` is the margin."""

    def __len__(self) -> int:
        return self.y.shape[0]


def sample(dist: TheoryDistribution, n: int, generator: torch.Generator,
           device: torch.device) -> Sample:
    """``n`` i.i.d. draws of eq. (3), generalised from 0.7 to ``p``.

    Drawn on the CPU from ``generator`` and then moved, so a seed gives the same data on every
    device.
    """
    y = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1  # (n,)
    agrees = torch.rand(n, generator=generator) < dist.p
    x1 = torch.where(agrees, y, -y)  # (n,)
    weak = torch.randn(n, dist.d, generator=generator) + dist.eta * y[:, None]  # (n, d)
    x = torch.cat([x1[:, None], weak], dim=1)  # (n, d+1)
    return Sample(x=x.to(device), y=y.to(device))


def sample_hash(data: Sample) -> str:
    """SHA-256 of the sample's bytes: provenance that catches a changed random number stream."""
    digest = hashlib.sha256()
    for tensor in (data.x, data.y):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- linear classifiers


@dataclass(frozen=True)
class LinearClassifier:
    """``sign(w.x + b)`` with ``w`` of shape (d+1,); ``w[0]`` is the weight on the robust x1."""

    w: torch.Tensor
    b: float

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b  # (n,)

    def unit_weights(self) -> torch.Tensor:
        """``w / ||w||_2`` (Thm 2.2 fixes ||w||_2 = 1; predictions do not depend on the scale
        of (w, b)), or zeros for the constant classifier."""
        w = self.w.double()
        length = torch.linalg.vector_norm(w)
        return w / length if length > 0 else w

    @property
    def weight_x1(self) -> float:
        """|w_1| of the unit-norm weights: reliance on the robust feature."""
        return float(self.unit_weights()[0].abs())

    @property
    def weight_rest_l1(self) -> float:
        """||w_{2..d+1}||_1 of the unit-norm weights: reliance on the weak (non-robust) features."""
        return float(self.unit_weights()[1:].abs().sum())


def averaging_classifier(dist: TheoryDistribution, device: torch.device) -> LinearClassifier:
    """f_avg of eq. (4): weight 1/d on every weak feature, none on x1, no bias."""
    w = torch.full((dist.d + 1,), 1.0 / dist.d, device=device)
    w[0] = 0.0
    return LinearClassifier(w=w, b=0.0)


# --------------------------------------------------------------------------- exact evaluation


def robust_margins(clf: LinearClassifier, data: Sample, eps: float) -> torch.Tensor:
    """Worst-case margins ``y(w.x + b) - eps*||w||_1`` over the l_inf ball of radius ``eps``.

    Exact for a linear model: the adversary moves every feature by ``eps`` against
    ``y * sign(w_i)`` (see ``worst_case_inputs``). ``eps`` 0 gives the clean margins.
    """
    return data.y * clf.scores(data.x) - eps * clf.w.abs().sum()  # (n,)


def correct(clf: LinearClassifier, data: Sample, eps: float = 0.0) -> torch.Tensor:
    """Per-example correctness (bool, (n,)) under the exact l_inf attack of radius ``eps``."""
    return robust_margins(clf, data, eps) > 0


def accuracy(clf: LinearClassifier, data: Sample, eps: float = 0.0) -> float:
    return float(correct(clf, data, eps).float().mean())


def correct_at(clf: LinearClassifier, data: Sample, radii: Sequence[float]) -> torch.Tensor:
    """Per-example correctness (bool, (len(radii), n)) at each radius, from one pass over x."""
    clean = robust_margins(clf, data, 0.0)  # (n,)
    budgets = torch.tensor(list(radii), device=clean.device) * clf.w.abs().sum()  # (R,)
    return clean[None, :] - budgets[:, None] > 0


def worst_case_inputs(clf: LinearClassifier, data: Sample, eps: float) -> torch.Tensor:
    """The exact l_inf adversarial examples against ``clf``: ``x - eps * y * sign(w)``.

    Used for transfer: these inputs are optimal against ``clf`` and are then shown to another
    classifier (end of Sec. 2.2). Features with zero weight are left alone.
    """
    return data.x - eps * data.y[:, None] * torch.sign(clf.w)[None, :]  # (n, d+1)


def population_accuracy(clf: LinearClassifier, dist: TheoryDistribution, eps: float = 0.0) -> float:
    """Exact accuracy of ``clf`` on D(p, d, eta) (not a sample) under the l_inf worst case.

    Given y and x1 = a*y, the weak part ``y * w_rest.x_rest`` is N(eta * sum(w_rest),
    ||w_rest||_2^2), so each of the four (y, a) cases is one normal tail probability.
    """
    w = clf.w.double().cpu()
    w1 = float(w[0])
    mean_rest = dist.eta * float(w[1:].sum())
    sd_rest = float(torch.linalg.vector_norm(w[1:]))
    budget = eps * float(w.abs().sum())
    total = 0.0
    for y in (1.0, -1.0):
        for a, prob in ((1.0, dist.p), (-1.0, 1 - dist.p)):
            # correct iff y*w_rest.x_rest > budget - a*w1 - y*b
            threshold = budget - a * w1 - y * clf.b
            if sd_rest > 0:
                p_correct = float(norm.sf(threshold, loc=mean_rest, scale=sd_rest))
            else:
                p_correct = float(mean_rest > threshold)
            total += 0.5 * prob * p_correct
    return total


def averaging_closed_form(dist: TheoryDistribution, eps: float = 0.0) -> float:
    """Sec. 2.1: f_avg's accuracy against l_inf ``eps`` is Phi((eta - eps) sqrt(d)).

    ``eps`` 0 gives the standard accuracy Phi(eta sqrt(d)); ``eps`` 2*eta gives Phi(-eta sqrt(d)).
    """
    return float(norm.cdf((dist.eta - eps) * math.sqrt(dist.d)))


def theorem_2_1_applies(dist: TheoryDistribution, eps: float) -> bool:
    """Theorem 2.1 holds against l_inf radii eps >= 2*eta (with float slack for '2*eta' typed
    in a spec)."""
    return eps >= 2 * dist.eta * (1 - 1e-9)


def theorem_2_1_bound(p: float, standard_accuracy: float) -> float:
    """Theorem 2.1: standard accuracy 1 - delta caps adversarial accuracy at p/(1-p) * delta.

    The paper prints 7/3 for p = 0.7 (Appendix B's last line says 7/2; the algebra gives 7/3).
    Clipped to [0, 1].
    """
    return min(1.0, max(0.0, p / (1 - p) * (1 - standard_accuracy)))


# --------------------------------------------------------------------------- training

MarginLoss = Callable[[torch.Tensor], torch.Tensor]
"""Per-example loss of the (worst-case) margins, (n,) -> (n,)."""


def hinge_loss(margins: torch.Tensor) -> torch.Tensor:
    return torch.relu(1 - margins)


def logistic_loss(margins: torch.Tensor) -> torch.Tensor:
    return F.softplus(-margins)


@dataclass(frozen=True)
class FitSettings:
    """How svm and logistic are optimised (full batch, so one step is one epoch)."""

    epochs: int
    lr: float
    svm_c: float


MARGIN_LOSSES: dict[str, MarginLoss] = {"hinge": hinge_loss, "logistic": logistic_loss}
"""The margin losses the theory's models minimise, by the name ``TheoryModelInfo.loss`` gives."""

THEORY_MODELS: dict[str, TheoryModelInfo] = catalog.THEORY_MODELS
"""The theory's linear classifiers (``contract.catalog.THEORY_MODELS``)."""


@dataclass(frozen=True)
class Problem:
    """One training objective: mean loss(y(w.x + b) - eps*||w||_1) + (l2/2)||w||_2^2."""

    loss: MarginLoss
    eps: float
    """The l_inf radius trained against; 0 is standard training."""
    l2: float


def training_problem(model: TheoryModelInfo, eps: float, n_train: int,
                     settings: FitSettings) -> Problem:
    """What ``model`` minimises on ``n_train`` examples against radius ``eps``."""
    if model.loss is None:
        raise ValueError(f"{model.name} is not trained")
    l2 = 1.0 / (settings.svm_c * n_train) if model.regularised else 0.0
    return Problem(loss=MARGIN_LOSSES[model.loss], eps=eps, l2=l2)


def fit(requests: Sequence[tuple[TheoryModelInfo, float]], train: Sample,
        dist: TheoryDistribution, settings: FitSettings, *,
        should_stop: Callable[[], bool] = lambda: False,
        on_epoch: Callable[[int], None] | None = None) -> list[LinearClassifier]:
    """The classifier each (model, train eps) learns from ``train``, in the order asked.

    All trainable requests share one batched optimisation (``train_linear``); f_avg ignores
    both the sample and the radius.
    """
    problems = [training_problem(model, eps, len(train), settings)
                for model, eps in requests if model.trainable]
    learnt = (train_linear(train, problems, epochs=settings.epochs, lr=settings.lr,
                           should_stop=should_stop, on_epoch=on_epoch) if problems else [])
    in_order = iter(learnt)  # the trainable requests, in the order of ``problems``
    return [next(in_order) if model.trainable else averaging_classifier(dist, train.x.device)
            for model, _ in requests]


def train_linear(train: Sample, problems: Sequence[Problem], *, epochs: int, lr: float,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_epoch: Callable[[int], None] | None = None) -> list[LinearClassifier]:
    """Minimise every ``Problem`` over its own (w, b); one classifier per problem.

    ``eps*||w||_1`` is the exact inner maximum of adversarial training, and it is not smooth:
    Adam on its subgradient oscillates around 0 and leaves weight on the weak features
    (REPRODUCTION.md, fact 2). So ``w = u - v`` with ``u, v >= 0``, where ``||w||_1`` is the
    linear ``sum(u + v)``, and every Adam step is followed by the projection onto u, v >= 0.
    The constraint set is a box, so this projection is also the right one in Adam's diagonal
    metric, and a weight whose gradient pushes it below zero lands on exactly zero. ``l2`` is
    applied as (l2/2)(||u||^2 + ||v||^2), which equals (l2/2)||w||^2 at any optimum
    (u_i v_i = 0 there, because a larger sum(u + v) only lowers the margins). Full batch from
    w = 0, b = 0 (deterministic), with a cosine decay of the step size to zero so the hinge's
    kinks do not leave the iterate oscillating.

    The problems are solved side by side as the columns of (d+1, K) matrices: their sum is
    separable and Adam works per coordinate, so each column follows exactly the path it would
    alone, while the data, the costly part, is read once per step for all of them.
    """
    n_features, k = train.x.shape[1], len(problems)
    u = torch.zeros(n_features, k, device=train.x.device)
    v = torch.zeros(n_features, k, device=train.x.device)
    b = torch.zeros(k, device=train.x.device)
    optimizer = torch.optim.Adam([u, v, b], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(epochs):
        if should_stop():
            raise Cancelled("stopped while training theory models")
        u.grad, v.grad, b.grad = objective_gradients(train, problems, u, v, b)
        optimizer.step()
        schedule.step()
        u.clamp_(min=0)
        v.clamp_(min=0)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    w = u - v
    return [LinearClassifier(w=w[:, j].clone(), b=float(b[j])) for j in range(k)]


def objective_gradients(train: Sample, problems: Sequence[Problem], u: torch.Tensor,
                        v: torch.Tensor, b: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the summed objectives of ``train_linear`` in u, v (d+1, K) and b (K,).

    Written out by hand because autograd's ``x.T @ (.)`` for the data term is several times
    slower on the CPU than the ``(.).T @ x`` used here. With m = y(x.(u - v) + b) -
    eps*sum(u + v): dm/du = y x - eps, dm/dv = -y x - eps, dm/db = y.
    """
    x, y = train.x, train.y[:, None]  # (n, d+1), (n, 1)
    eps = torch.tensor([p.eps for p in problems], device=x.device)  # (K,)
    l2 = torch.tensor([p.l2 for p in problems], device=x.device)  # (K,)
    margins = y * (x @ (u - v) + b) - eps * (u + v).sum(0)  # (n, K)
    slopes = _loss_slopes(problems, margins)  # (n, K): d objective / d margin
    score_slopes = slopes * y  # (n, K): d objective / d (w.x + b)
    data_grad = (score_slopes.T @ x).T  # (d+1, K)
    eps_grad = eps * slopes.sum(0)  # (K,)
    return (data_grad - eps_grad + l2 * u,
            -data_grad - eps_grad + l2 * v,
            score_slopes.sum(0))


def _loss_slopes(problems: Sequence[Problem], margins: torch.Tensor) -> torch.Tensor:
    """d/dm of each problem's mean loss at its column of ``margins`` (n, K), by autograd.

    Each distinct loss is applied to the whole matrix and masked to its columns: selecting
    columns one by one would cost autograd a full (n, K) buffer per column.
    """
    margins = margins.detach().requires_grad_(True)
    total = margins.new_zeros(())
    for loss in dict.fromkeys(p.loss for p in problems):
        mine = torch.tensor([p.loss is loss for p in problems], device=margins.device)  # (K,)
        total = total + (loss(margins) * mine).mean(0).sum()
    (slopes,) = torch.autograd.grad(total, margins)
    return slopes


def objective_value(clf: LinearClassifier, data: Sample, problem: Problem) -> float:
    """``problem``'s objective at ``clf``: how well the optimiser did (compare two optima)."""
    margins = robust_margins(clf, data, problem.eps)
    return float(problem.loss(margins).mean() + 0.5 * problem.l2 * clf.w.square().sum())


# --------------------------------------------------------------------------- the figure


@dataclass(frozen=True)
class TradeoffPoint:
    """One classifier evaluated at one radius: a point of the E1 figure."""

    model: str
    train_eps: float
    eval_eps: float
    standard_accuracy: float
    adversarial_accuracy: float


def tradeoff_figure(points: Sequence[TradeoffPoint], dist: TheoryDistribution) -> bytes:
    """Adversarial against standard accuracy with Theorem 2.1's bound: PNG bytes.

    Every point must lie on or below the line adv = p/(1-p) * (1 - std); the x1-only classifier
    sits at its corner (p, p). Drawn with the Agg canvas directly (no global backend switch).
    """
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    grid = torch.linspace(0, 1, 201).tolist()
    bound = [theorem_2_1_bound(dist.p, s) for s in grid]
    axes.plot(grid, bound, color="black",
              label=f"Theorem 2.1: adv = {dist.p:g}/{1 - dist.p:g} (1 - std)")
    axes.fill_between(grid, bound, [1.0] * len(grid), color="0.9",
                      label="impossible at eps >= 2 eta")
    markers = {"averaging": "s", "svm": "o", "logistic": "^"}
    top_eps = max([p.train_eps for p in points] + [1e-12])
    for model in sorted({p.model for p in points}):
        mine = [p for p in points if p.model == model]
        scatter = axes.scatter([p.standard_accuracy for p in mine],
                               [p.adversarial_accuracy for p in mine],
                               c=[p.train_eps for p in mine], cmap="viridis", vmin=0, vmax=top_eps,
                               marker=markers.get(model, "o"), edgecolors="black", label=model)
    if points:
        figure.colorbar(scatter, ax=axes, label="train eps (colour)")
    axes.set_xlim(0, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("standard accuracy")
    axes.set_ylabel("adversarial accuracy (exact l_inf, eps >= 2 eta)")
    axes.set_title(f"D(p={dist.p:g}, d={dist.d}, eta={dist.eta:.4g})")
    axes.legend(loc="lower left", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
