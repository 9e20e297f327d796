"""AutoAttack (Croce & Hein 2020): a fixed, parameter-free ensemble, the field's standard.

The versions are those of the reference code (fra31/auto-attack, ``AutoAttack``):

- ``standard``: APGD-CE (1 run), APGD-T (targeted DLR, 9 target classes), FAB-T (9 target
  classes) and Square (5,000 queries), 100 iterations each;
- ``plus``: APGD-CE and APGD-DLR with 5 restarts each, untargeted FAB with 5 restarts, Square,
  APGD-T and FAB-T;
- ``rand``: APGD-CE and APGD-DLR with expectation over 20 draws per gradient (EOT), for
  randomised models.

Every component runs only on the examples that all earlier ones left standing (one boolean
per example carried through, as the reference's ``robust_flags``), so the ensemble costs
little more than its first attack on a weak model. The result is the per-example worst case:
an example counts as robust only if it is correct on the clean input and at every component's
point. Each component's seconds and the robustness left after it are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from contract.specs.attacks import AutoAttack
from workers.science.attacks.apgd import apgd
from workers.science.attacks.common import (
    AttackRun,
    ComponentOutcome,
    attack_mode,
    check_inputs,
    synchronize,
)
from workers.science.attacks.fab import fab
from workers.science.attacks.square import square
from workers.science.losses import correct

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator | None], torch.Tensor]
"""(model, x (b, C, H, W), y (b,), generator) -> adversarial x (b, C, H, W)."""


@dataclass(frozen=True)
class AutoAttackConfig:
    """The knobs of one AutoAttack, shared by its components (reference defaults)."""

    norm: str
    eps: float
    steps: int = 100
    """Iterations of APGD and FAB."""
    queries: int = 5000
    """Square Attack proposals."""
    n_target_classes: int = 9
    """Targets of APGD-T and FAB-T."""
    restarts: int = 1
    """Runs of APGD-CE / APGD-DLR / FAB in ``standard``; ``plus`` uses 5."""
    eot_iter: int = 1
    """Gradient draws per APGD step; ``rand`` uses 20."""


def _components(config: AutoAttackConfig) -> dict[str, AttackFn]:
    """Component name -> the attack with this configuration (the reference's names)."""
    c = config
    return {
        "apgd-ce": lambda m, x, y, g: apgd(m, x, y, norm=c.norm, eps=c.eps, steps=c.steps,
                                           loss="ce", restarts=c.restarts,
                                           eot_iter=c.eot_iter, generator=g),
        "apgd-dlr": lambda m, x, y, g: apgd(m, x, y, norm=c.norm, eps=c.eps, steps=c.steps,
                                            loss="dlr", restarts=c.restarts,
                                            eot_iter=c.eot_iter, generator=g),
        "apgd-t": lambda m, x, y, g: apgd(m, x, y, norm=c.norm, eps=c.eps, steps=c.steps,
                                          targeted=True, n_target_classes=c.n_target_classes,
                                          eot_iter=c.eot_iter, generator=g),
        "fab": lambda m, x, y, g: fab(m, x, y, norm=c.norm, eps=c.eps, steps=c.steps,
                                      targeted=False, restarts=c.restarts, generator=g),
        "fab-t": lambda m, x, y, g: fab(m, x, y, norm=c.norm, eps=c.eps, steps=c.steps,
                                        targeted=True, n_target_classes=c.n_target_classes,
                                        generator=g),
        "square": lambda m, x, y, g: square(m, x, y, norm=c.norm, eps=c.eps,
                                            queries=c.queries, p_init=0.8, rescale=False,
                                            generator=g),
    }


VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
"""Version -> its components in the order they run (fra31/auto-attack ``set_version``)."""
VERSION_SETTINGS: dict[str, dict[str, int]] = {
    "standard": {"restarts": 1, "eot_iter": 1},
    "plus": {"restarts": 5, "eot_iter": 1},
    "rand": {"restarts": 1, "eot_iter": 20},
}
"""What each version changes in the components' configuration."""
COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
"""Every component name; ``variant`` of an AutoAttack result row is one of these."""
BLACKBOX = frozenset({"square"})
"""Components that use no gradient: breaking points the others could not suggests masking."""


@dataclass
class AutoAttackResult:
    """The per-example worst case of the ensemble and the trail that led to it."""

    x_adv: torch.Tensor
    """(B, C, H, W): the first adversarial point found per example, else ``x``."""
    clean: torch.Tensor
    """(B,) bool: correct on the clean input."""
    components: list[ComponentOutcome] = field(default_factory=list)

    @property
    def robust(self) -> torch.Tensor:
        """(B,) bool: correct at ``x`` and at every component's point."""
        return self.components[-1].robust if self.components else self.clean


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    version: str = "standard",
    steps: int = 100,
    queries: int = 5000,
    n_target_classes: int = 9,
    generator: torch.Generator | None = None,
) -> AutoAttackResult:
    r"""AutoAttack in "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks" (Croce & Hein 2020).

    Distance measure: Linf or L2, in pixel space, within the image box [0, 1].

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (B, K), K > n_target_classes.
        x (torch.Tensor): clean images (B, C, H, W) in [0, 1].
        y (torch.Tensor): (B,) true labels.
        norm (str): "linf" or "l2".
        eps (float): radius of the ball.
        version (str): "standard", "plus" or "rand" (``VERSIONS``). (Default: "standard")
        steps (int): iterations of APGD and FAB. (Default: 100)
        queries (int): Square Attack proposals. (Default: 5000)
        n_target_classes (int): targets of APGD-T and FAB-T; models with fewer classes use
            K - 1. (Default: 9)
        generator (torch.Generator): source of every random choice. (Default: None)

    Shape:
        - x: (B, C, H, W) in [0, 1]; y: (B,); ``result.x_adv``: (B, C, H, W), in the ball.

    Returns an ``AutoAttackResult``: ``x_adv``, ``clean``, and per component its ``robust``
    flags after it (cumulative), the examples it ``broke`` and its ``seconds``.

    Examples::
        >>> result = autoattack(model, x, y, norm="linf", eps=0.3)
        >>> float(result.robust.float().mean())   # robust accuracy
    """
    check_inputs(x, y, eps)
    if version not in VERSIONS:
        raise ValueError(f"unknown AutoAttack version {version!r}; known: {', '.join(VERSIONS)}")
    x = x.detach()
    with attack_mode(model), torch.no_grad():
        clean_logits = model(x)
    classes = clean_logits.shape[1] if clean_logits.dim() == 2 else 1
    config = AutoAttackConfig(norm=norm, eps=eps, steps=steps, queries=queries,
                              n_target_classes=max(1, min(n_target_classes, classes - 1)),
                              **VERSION_SETTINGS[version])
    attacks = _components(config)
    result = AutoAttackResult(x_adv=x.clone(), clean=correct(clean_logits, y))
    robust = result.clean.clone()
    for name in VERSIONS[version]:
        synchronize(x.device)
        started = time.perf_counter()
        index = robust.nonzero().flatten()
        broke = torch.zeros_like(robust)
        if index.numel() > 0:
            found = attacks[name](model, x[index], y[index], generator)
            with attack_mode(model), torch.no_grad():
                fooled = ~correct(model(found), y[index])
            result.x_adv[index[fooled]] = found[fooled]
            broke[index[fooled]] = True
            robust = robust & ~broke
        synchronize(x.device)
        result.components.append(ComponentOutcome(name, robust.clone(), broke,
                                                  time.perf_counter() - started))
    return result


def run_spec(spec: AutoAttack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None) -> AttackRun:
    """``evaluation.attacks`` entry ``kind: autoattack``: the ensemble and its components."""
    result = autoattack(model, x, y, norm=spec.norm, eps=spec.eps, version=spec.version,
                        steps=spec.steps, queries=spec.queries,
                        n_target_classes=spec.n_target_classes, generator=generator)
    return AttackRun(result.x_adv, robust=result.robust, components=tuple(result.components))
