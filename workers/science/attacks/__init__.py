"""Attacks on [0, 1] images in pixel space: PGD, APGD, FAB, Square, AutoAttack, FGSM, the exact
linear worst case.

Every attack takes the model, clean inputs ``(B, C, H, W)`` and labels ``(B,)`` as keyword-only
configuration after them, returns adversarial inputs of the same shape in [0, 1] inside the ball
(``autoattack`` returns them in an ``AutoAttackResult`` with its per-component trail), leaves
the model's mode as it was and gives its parameters no gradient. Random choices come from an
optional ``generator``.
"""

from workers.science.attacks.apgd import apgd
from workers.science.attacks.autoattack import AutoAttackResult, autoattack
from workers.science.attacks.common import AttackRun, ComponentOutcome
from workers.science.attacks.fab import fab
from workers.science.attacks.fgsm import fgsm
from workers.science.attacks.linear import LinearWorstCase, affine_parameters, exact_linear_attack
from workers.science.attacks.pgd import pgd
from workers.science.attacks.registry import run_attack_spec
from workers.science.attacks.square import square

__all__ = [
    "AttackRun",
    "AutoAttackResult",
    "ComponentOutcome",
    "LinearWorstCase",
    "affine_parameters",
    "apgd",
    "autoattack",
    "exact_linear_attack",
    "fab",
    "fgsm",
    "pgd",
    "run_attack_spec",
    "square",
]
