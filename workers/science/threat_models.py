"""Threat models: the l_inf and l_2 balls around an input, intersected with the image box [0, 1].

A threat model is a small object bound to ``(x0, eps, step_size)`` with three calls that a
generic attack loop needs (MadryLab/robustness ``attack_steps.py``):

- ``random_perturb(x)``: a uniform random point of the ball around ``x`` (a random start);
- ``step(x, grad)``: one ascent step along the normalised gradient (its sign for l_inf,
  ``grad / ||grad||_2`` per example for l_2);
- ``project(x)``: back into the ball around ``x0`` and into [0, 1].

``THREAT_MODELS`` implements the norms of ``contract.catalog.NORMS``, the one list of their names
(checked when this module is imported). Everything is in pixel space, per example, for inputs
``(B, C, H, W)`` (any ``(B, ...)`` works).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from contract.catalog import NORMS

TINY = 1e-12
"""Floor of a norm we divide by: a zero gradient or a zero perturbation never gives NaN."""


def _per_example_l2(t: torch.Tensor) -> torch.Tensor:
    """||t_i||_2 for each example, shaped (B, 1, ..., 1) to broadcast against t."""
    norms = t.flatten(1).norm(p=2, dim=1)  # (B,)
    return norms.view(-1, *([1] * (t.dim() - 1)))


class ThreatModel(ABC):
    """A ball of radius ``eps`` around ``x0`` inside [0, 1], and how to move in it.

    Args:
        x0: the clean inputs, (B, ...) in [0, 1]; the ball is centred on each example.
        eps: the radius in pixel space (>= 0).
        step_size: the length of one ``step`` in the ball's norm (>= 0).
    """

    def __init__(self, x0: torch.Tensor, eps: float, step_size: float) -> None:
        if eps < 0 or step_size < 0:
            raise ValueError(f"eps and step_size must be >= 0, got {eps} and {step_size}")
        self.x0 = x0.detach()
        self.eps = float(eps)
        self.step_size = float(step_size)

    @abstractmethod
    def random_perturb(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A point drawn uniformly from the ball around ``x``, clipped to [0, 1]."""

    @abstractmethod
    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``x`` moved by ``step_size`` along the steepest ascent direction for this norm."""

    @abstractmethod
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` brought back into the ball around ``x0`` and into [0, 1]."""


class LinfBall(ThreatModel):
    """The l_inf ball ``||x - x0||_inf <= eps``; with the box it is a box, so clipping is exact."""

    def random_perturb(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.project(x + (2 * noise - 1) * self.eps)

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return x + self.step_size * grad.sign()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        delta = (x - self.x0).clamp(-self.eps, self.eps)
        return (self.x0 + delta).clamp(0, 1)


class L2Ball(ThreatModel):
    """The l_2 ball ``||x - x0||_2 <= eps``, per example.

    ``project`` scales the perturbation radially into the ball, then clips to [0, 1]. Clipping
    moves every pixel towards ``x0`` (which lies in [0, 1]), so the result stays in the ball; it
    is the usual PGD projection, not the exact Euclidean projection onto ball and box together.
    """

    def random_perturb(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction = direction / _per_example_l2(direction).clamp_min(TINY)
        n = x[0].numel()
        u = torch.rand((x.shape[0],), generator=generator, device=x.device, dtype=x.dtype)
        radius = self.eps * u.pow(1.0 / n)  # uniform in volume: P(r <= t) = (t / eps)^n
        return self.project(x + direction * radius.view(-1, *([1] * (x.dim() - 1))))

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return x + self.step_size * grad / _per_example_l2(grad).clamp_min(TINY)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        delta = x - self.x0
        scale = (self.eps / _per_example_l2(delta).clamp_min(TINY)).clamp(max=1.0)
        return (self.x0 + delta * scale).clamp(0, 1)


THREAT_MODELS: dict[str, type[ThreatModel]] = {"linf": LinfBall, "l2": L2Ball}
if set(THREAT_MODELS) != set(NORMS):
    raise RuntimeError(f"THREAT_MODELS and contract.catalog.NORMS differ: "
                       f"{sorted(set(THREAT_MODELS) ^ set(NORMS))}")
"""Norm name -> threat model class; the spec's ``NormName`` lists exactly these keys."""


def threat_model(norm: str, x0: torch.Tensor, eps: float, step_size: float) -> ThreatModel:
    """The ``norm`` ball around ``x0``; an unknown name is an error naming the known ones."""
    if norm not in THREAT_MODELS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(THREAT_MODELS)}")
    return THREAT_MODELS[norm](x0, eps, step_size)
