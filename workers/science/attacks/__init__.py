"""Attacks on [0, 1] images in pixel space: PGD (any threat model), FGSM, exact linear worst case.

Every attack takes the model, clean inputs ``(B, C, H, W)`` and labels ``(B,)``, returns
adversarial inputs of the same shape in [0, 1], leaves the model's mode as it was and gives its
parameters no gradient.
"""

from workers.science.attacks.fgsm import fgsm
from workers.science.attacks.linear import LinearWorstCase, affine_parameters, exact_linear_attack
from workers.science.attacks.pgd import pgd

__all__ = ["LinearWorstCase", "affine_parameters", "exact_linear_attack", "fgsm", "pgd"]
