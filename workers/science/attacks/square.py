"""The Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"): score-based, no gradients at all.

Random search on the margin z_y - max_{i != y} z_i. It starts at a perturbation on the
boundary of the ball (vertical stripes of +-eps for l_inf; a grid of +-"pseudo-Gaussian" blocks
for l_2) and proposes, one query at a time, a change confined to a random square window whose
side shrinks with the schedule of ``p_init`` (the fraction of pixels changed: halved at 10, 50,
200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries, rescaled to the budget). l_inf sets
the window to +-eps (a random sign per channel); l_2 moves mass from a second window into the
first, keeping the norm at eps. A proposal is kept only if it lowers the margin, and an
example stops being attacked once its margin is <= 0 (misclassified).

Unlike the reference code, each example draws its own window (as in the paper's own
implementation); a proposal that changes nothing is flipped in sign, so no query is wasted.
Because it needs no gradient, it is the check of masked gradients: it should never break
points that the white-box attacks could not (``blackbox_beats_whitebox`` in the evaluation).
Cost: one forward per query and example still standing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from contract.specs.attacks import SquareAttack
from workers.science.attacks.common import (
    AttackRun,
    attack_mode,
    check_inputs,
    lp_norms,
    view_as_batch,
)
from workers.science.attacks.dlr import margin
from workers.science.losses import correct
from workers.science.threat_models import THREAT_MODELS, TINY

SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
            (6000, 128), (8000, 256))
"""(queries out of 10,000, divisor of p_init until then); beyond the last: p_init / 512."""


def fraction_changed(p_init: float, query: int, queries: int, rescale: bool = True) -> float:
    """p, the fraction of pixels a proposal changes at ``query`` of a budget of ``queries``.

    The schedule is written for 10,000 queries; ``rescale`` stretches it over the budget (the
    paper), without it the query count is read as is (AutoAttack, 5,000 queries: the step
    sizes of the first half of the 10,000-query schedule).
    """
    scaled = int(query / queries * 10_000) if rescale else query
    for until, divisor in SCHEDULE:
        if scaled <= until:
            return p_init / divisor
    return p_init / 512


def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    queries: int = 5000,
    p_init: float = 0.8,
    restarts: int = 1,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Square Attack in "Square Attack: a query-efficient black-box adversarial attack via
    random search" (Andriushchenko et al. 2020), untargeted, on the margin loss.

    Distance measure: Linf or L2, in pixel space, within the image box [0, 1].

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (B, K), K >= 2; only its outputs
            are used.
        x (torch.Tensor): clean images (B, C, H, W) in [0, 1].
        y (torch.Tensor): (B,) true labels.
        norm (str): "linf" or "l2".
        eps (float): radius of the ball.
        queries (int): proposals per run after the initial point (the reference's
            ``n_queries``). (Default: 5000)
        p_init (float): initial fraction of pixels a proposal changes. (Default: 0.8)
        restarts (int): runs on the examples still standing. (Default: 1)
        rescale (bool): stretch the 10,000-query schedule of ``p`` over ``queries``; AutoAttack
            does not. (Default: True)
        generator (torch.Generator): source of every random choice. (Default: None)

    Shape:
        - x: (B, C, H, W) in [0, 1]; y: (B,); output: (B, C, H, W) in [0, 1], inside the ball.

    Per example the output is the point of lowest margin found (misclassified where the
    margin reached 0); examples misclassified already are returned as they are.

    Examples::
        >>> x_adv = square(model, x, y, norm="linf", eps=0.3, queries=5000)
    """
    check_inputs(x, y, eps)
    if norm not in THREAT_MODELS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(THREAT_MODELS)}")
    if queries < 0 or restarts < 1 or not 0 < p_init <= 1:
        raise ValueError(f"need queries >= 0, restarts >= 1 and p_init in (0, 1]; got "
                         f"{queries}, {restarts}, {p_init}")
    if x.dim() != 4:
        raise ValueError(f"the Square Attack needs images (B, C, H, W); got {tuple(x.shape)}")
    x = x.detach()
    x_adv = x.clone()
    with attack_mode(model), torch.no_grad():
        standing = correct(model(x), y)
        if eps == 0:
            return x_adv
        for _ in range(restarts):
            index = standing.nonzero().flatten()
            if index.numel() == 0:
                break
            run = _linf_run if norm == "linf" else _l2_run
            point, broken = run(model, x[index], y[index], eps, queries,
                                lambda q: fraction_changed(p_init, q, queries, rescale), generator)
            x_adv[index] = point
            standing[index[broken]] = False
    return x_adv


# --------------------------------------------------------------------------- random choices


def _signs(shape: tuple[int, ...], like: torch.Tensor,
           generator: torch.Generator | None) -> torch.Tensor:
    """Uniform random +-1 of ``shape``."""
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _corners(n: int, limit: int, side: int, like: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
    """Per example the first row (or column) of a window of ``side`` inside ``limit`` (n,)."""
    return torch.randint(0, limit - side + 1, (n,), generator=generator, device=like.device)


def _window(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
            side: int) -> tuple[torch.Tensor, ...]:
    """Advanced-index tuple selecting each example's ``side`` x ``side`` window: (B, C, s, s)."""
    n, c = x.shape[:2]
    offsets = torch.arange(side, device=x.device)
    rows = (top.view(-1, 1) + offsets).view(n, 1, side, 1)
    cols = (left.view(-1, 1) + offsets).view(n, 1, 1, side)
    examples = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return examples, channels, rows, cols


def _side(p: float, x: torch.Tensor, smallest: int) -> int:
    """The window side: sqrt(p * pixels), at least ``smallest``, at most the image."""
    c, h, w = x.shape[1:]
    return min(max(int(round(math.sqrt(p * c * h * w / c))), smallest), h, w)


# --------------------------------------------------------------------------- l_inf


Schedule = Callable[[int], float]
"""query -> fraction of pixels a proposal changes."""


def _linf_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
              schedule: Schedule, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One l_inf run: (the lowest-margin points (B, C, H, W), misclassified (B,) bool)."""
    n, c, h, w = x.shape
    best = (x + eps * _signs((n, c, 1, w), x, generator)).clamp(0, 1)  # vertical stripes
    best_margin = margin(model(best), y)  # (B,)
    for query in range(queries):
        active = (best_margin > 0).nonzero().flatten()
        if active.numel() == 0:
            break
        xa, current = x[active], best[active]
        side = _side(schedule(query), xa, 1)
        where = _window(xa, _corners(len(active), h, side, xa, generator),
                        _corners(len(active), w, side, xa, generator), side)
        sign = _signs((len(active), c, 1, 1), xa, generator)
        proposal = current.clone()
        proposal[where] = (xa[where] + eps * sign).clamp(0, 1)
        unchanged = (proposal == current).flatten(1).all(dim=1)  # flip: change something
        proposal[where] = torch.where(view_as_batch(unchanged, sign),
                                      (xa[where] - eps * sign).clamp(0, 1), proposal[where])
        proposal_margin = margin(model(proposal), y[active])
        better = proposal_margin < best_margin[active]
        best[active[better]] = proposal[better]
        best_margin[active[better]] = proposal_margin[better]
    return best, best_margin <= 0


# --------------------------------------------------------------------------- l_2


def _rectangles(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """Concentric rectangles weighted 1/(k+1)^2 around the centre, unit l_2 norm (rows, cols)."""
    block = torch.zeros(rows, cols, device=like.device, dtype=like.dtype)
    top, left = rows // 2, cols // 2
    for k in range(max(top + 1, left + 1)):
        block[max(top - k, 0):min(top + k + 1, rows), max(left - k, 0):min(left + k + 1, cols)] \
            += 1.0 / (k + 1) ** 2
    return block / block.norm().clamp_min(TINY)


def _pseudo_gaussian(side: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The paper's l_2 proposal (side, side): +rectangles over -rectangles, unit norm, randomly
    transposed."""
    block = torch.zeros(side, side, device=like.device, dtype=like.dtype)
    block[: side // 2] = _rectangles(side // 2, side, like)
    block[side // 2:] = -_rectangles(side - side // 2, side, like)
    block = block / block.norm().clamp_min(TINY)
    flip = torch.randint(0, 2, (1,), generator=generator, device=like.device)
    return block.t() if bool(flip) else block


def _l2_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """A grid of 5 x 5 pseudo-Gaussian blocks with random signs, scaled to norm eps."""
    n, c, h, w = x.shape
    side = max(h // 5, 1)
    delta = torch.zeros_like(x)
    start_h, start_w = (h - side * 5) // 2, (w - side * 5) // 2
    for i in range(h // side):
        for j in range(w // side):
            top, left = max(start_h, 0) + i * side, max(start_w, 0) + j * side
            if top + side > h or left + side > w:
                continue
            block = _pseudo_gaussian(side, x, generator)
            delta[:, :, top:top + side, left:left + side] += \
                block * _signs((n, c, 1, 1), x, generator)
    delta = delta / view_as_batch(lp_norms(delta, "l2").clamp_min(TINY), delta)
    return (x + eps * delta).clamp(0, 1)


def _l2_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
            schedule: Schedule, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One l_2 run: (the lowest-margin points (B, C, H, W), misclassified (B,) bool)."""
    n, c, h, w = x.shape
    best = _l2_start(x, eps, generator)
    best_margin = margin(model(best), y)
    for query in range(queries):
        active = (best_margin > 0).nonzero().flatten()
        if active.numel() == 0:
            break
        xa, b = x[active], len(active)
        delta = best[active] - xa  # (b, C, H, W)
        side = _side(schedule(query), xa, 3)
        side = side if side % 2 == 1 else side - 1
        first = _window(xa, _corners(b, h, side, xa, generator),
                        _corners(b, w, side, xa, generator), side)
        second = _window(xa, _corners(b, h, side, xa, generator),
                         _corners(b, w, side, xa, generator), side)
        both = torch.zeros_like(delta)
        both[first], both[second] = 1.0, 1.0
        image_norm = view_as_batch(lp_norms(delta, "l2"), delta)  # (b, 1, 1, 1)
        windows_norm = view_as_batch(lp_norms(delta * both, "l2"), delta)
        old = delta[first]  # (b, C, s, s)
        old = old / old.flatten(2).norm(dim=2).view(b, c, 1, 1).clamp_min(TINY)
        new = _pseudo_gaussian(side, xa, generator) * _signs((b, c, 1, 1), xa, generator) + old
        budget = ((eps ** 2 - image_norm ** 2).clamp_min(0) / c + windows_norm ** 2).sqrt()
        new = new / new.flatten(2).norm(dim=2).view(b, c, 1, 1).clamp_min(TINY) * budget
        delta[second] = 0.0
        delta[first] = new
        delta = delta / view_as_batch(lp_norms(delta, "l2").clamp_min(TINY), delta)
        proposal = (xa + eps * delta).clamp(0, 1)
        proposal_margin = margin(model(proposal), y[active])
        better = proposal_margin < best_margin[active]
        best[active[better]] = proposal[better]
        best_margin[active[better]] = proposal_margin[better]
    return best, best_margin <= 0


def run_spec(spec: SquareAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> AttackRun:
    """``evaluation.attacks`` entry ``kind: square`` (``contract.specs.attacks.SquareAttack``)."""
    return AttackRun(square(model, x, y, norm=spec.norm, eps=spec.eps, queries=spec.queries,
                            p_init=spec.p_init, restarts=spec.restarts, generator=generator))
