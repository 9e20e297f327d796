"""Validity checks of an evaluation (Carlini et al. 2019, "On evaluating adversarial robustness",
lists these symptoms of a broken evaluation), in a small module of their own.

Run on one batch (the first by default, every batch with ``checks: all``):

- ``eps0_equals_clean``: PGD at eps 0 classifies exactly like the clean forward pass;
- ``more_steps[...]``: a PGD attack is never beaten by a cheaper run of itself (half the
  steps, one restart, the same random start), example by example;
- ``no_weaker_than_fgsm[...]``: l_inf PGD is at least as strong as FGSM at the same eps;
- ``large_eps[...]``: a very large ball (l_inf 0.5, l_2 0.5 sqrt(D), which contains it) brings a
  model that is clearly better than chance to <= 5% accuracy; otherwise its gradients are
  probably masked;
- ``exact_is_lower_bound[...]``: no attack beats the exact linear worst case of the same ball.

Free, from the evaluation's own per-example results on every example:

- ``blackbox_beats_whitebox[norm eps]``: the score-based Square Attack (alone, or inside
  AutoAttack) breaks no point that every white-box attack of the same ball left standing. If it
  does, the gradients the white-box attacks follow are masked or obfuscated (Athalye et al.
  2018; Croce & Hein 2020 use Square in AutoAttack for exactly this reason).

These checks cost forward and backward passes of their own; ``CountingPasses`` measures them,
and the evaluation logs ``checks: +N forward-backward passes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from contract.specs.attacks import AttackSpec, FGSMAttack, PGDAttack
from workers.science.losses import correct, is_binary

Check = dict[str, Any]
"""{"passed": bool, "value": ..., "expected": ..., "detail": str}."""

LARGE_EPS_LINF = 0.5
"""Half the pixel range: the ball reaches the mid-grey image from every input."""
LARGE_EPS_STEPS = 20
LARGE_EPS_MAX_ACCURACY = 0.05
EPS0_MAX_STEPS = 10
"""The eps-0 check needs no more iterations than this to show a broken projection."""

AttackPoint = Callable[[Any, int], torch.Tensor]
"""(attack spec, seed) -> the adversarial inputs it finds for the batch (B, C, H, W)."""


def check(passed: bool, value: Any, expected: Any, detail: str) -> Check:
    return {"passed": bool(passed), "value": value, "expected": expected, "detail": detail}


def accuracy(bits: torch.Tensor) -> float:
    return float(bits.float().mean()) if bits.numel() else 0.0


@dataclass
class CountingPasses:
    """Counts the model's forward calls and the examples they carry (a forward hook)."""

    calls: int = 0
    examples: int = 0

    @contextmanager
    def on(self, model: nn.Module) -> Iterator[CountingPasses]:
        def hook(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
            self.calls += 1
            self.examples += int(inputs[0].shape[0]) if inputs else 0

        handle = model.register_forward_pre_hook(hook)
        try:
            yield self
        finally:
            handle.remove()


@dataclass
class BatchChecks:
    """The checks of one batch (x, y); ``correct_under`` runs an attack spec on it.

    ``clean`` and ``outcomes`` are this batch's slices of the evaluation's own results (CPU).
    """

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    attacks: list[AttackSpec]
    clean: torch.Tensor
    outcomes: list[torch.Tensor]
    attack_point: AttackPoint
    seed: int
    seed_of_attack: Callable[[int], int]
    """Attack index -> the seed the main run used for it on this batch."""
    label: Callable[[Any], str]
    found: dict[str, tuple[int | None, Check]] = field(default_factory=dict)

    def run(self) -> dict[str, tuple[int | None, Check]]:
        """Check name -> (index of the attack it is about or None, the check)."""
        self.found["eps0_equals_clean"] = (None, self.eps0_equals_clean())
        for norm in sorted({spec.norm for spec in self.attacks} or {"linf"}):
            self.found[f"large_eps[{norm}]"] = (None, self.large_eps(norm))
        for index, spec in enumerate(self.attacks):
            name = self.label(spec)
            cheap = spec.cheaper()
            if cheap is not None:
                self.found[f"more_steps[{name}]"] = (index, self.more_steps(index, cheap))
            if spec.fgsm_comparable:
                self.found[f"no_weaker_than_fgsm[{name}]"] = (index, self.no_weaker_than_fgsm(index, spec))
            exact = self._exact_index(spec)
            if exact is not None:
                self.found[f"exact_is_lower_bound[{name}]"] = (index, self.exact_is_lower_bound(index, exact))
        return self.found

    def _correct_at(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return correct(self.model(x), self.y)

    def correct_under(self, spec: Any, seed: int) -> torch.Tensor:
        """(B,) bool on the CPU: correct at x and at the point the attack ``spec`` finds."""
        return self._correct_at(self.attack_point(spec, seed)).cpu() & self.clean

    def eps0_equals_clean(self) -> Check:
        pgd_specs = [spec for spec in self.attacks if isinstance(spec, PGDAttack)]
        base = pgd_specs[0] if pgd_specs else PGDAttack.model_validate({"norm": "linf", "eps": 0.0, "steps": 5})
        spec = base.model_copy(update={
            "eps": 0.0, "steps": min(base.steps, EPS0_MAX_STEPS), "restarts": 1,
            "random_start": True, "step_size": base.resolved_step_size or 0.01,
        })
        raw = self._correct_at(self.attack_point(spec, self.seed)).cpu()  # compared to clean
        differ = int((raw != self.clean).sum())
        return check(differ == 0, accuracy(raw), accuracy(self.clean),
                     f"{differ} of {raw.numel()} examples classified differently at eps 0")

    def large_eps(self, norm: str) -> Check:
        eps = LARGE_EPS_LINF if norm == "linf" else LARGE_EPS_LINF * math.sqrt(self.x[0].numel())
        clean_accuracy = accuracy(self.clean)
        floor = self._nontrivial_accuracy()
        if clean_accuracy <= floor:
            return check(True, clean_accuracy, f"> {floor:.3g} to apply",
                         "not applicable: clean accuracy too close to chance")
        spec = PGDAttack.model_validate({"norm": norm, "eps": eps, "steps": LARGE_EPS_STEPS})
        value = accuracy(self.correct_under(spec, self.seed))
        return check(value <= LARGE_EPS_MAX_ACCURACY, value, f"<= {LARGE_EPS_MAX_ACCURACY}",
                     f"PGD {norm} eps={eps:.4g}, {LARGE_EPS_STEPS} steps; a higher accuracy "
                     "suggests masked gradients")

    def _nontrivial_accuracy(self) -> float:
        """Clean accuracy above which a model counts as non-trivial: 2x chance; 0.75 if binary."""
        with torch.no_grad():
            logits = self.model(self.x[:1])
        return 0.75 if is_binary(logits) else 2.0 / logits.shape[1]

    def more_steps(self, index: int, cheap: AttackSpec) -> Check:
        # The same seed as the main run on this batch: its first restart starts where cheap does.
        cheap_correct = self.correct_under(cheap, self.seed_of_attack(index))
        full = self.outcomes[index]
        raised = int((full & ~cheap_correct).sum())
        return check(raised == 0, accuracy(full), f"<= {accuracy(cheap_correct):.6g}",
                     f"{raised} examples survive the full attack but not {self.label(cheap)}")

    def no_weaker_than_fgsm(self, index: int, spec: AttackSpec) -> Check:
        fgsm_accuracy = accuracy(self.correct_under(FGSMAttack(eps=spec.eps), self.seed))
        value = accuracy(self.outcomes[index])
        return check(value <= fgsm_accuracy, value, f"<= {fgsm_accuracy:.6g}",
                     f"FGSM eps={spec.eps:.6g} on the batch")

    def _exact_index(self, spec: Any) -> int | None:
        """The configured exact linear attack of the same ball as ``spec``, if any."""
        if spec.exact:
            return None
        return next((i for i, other in enumerate(self.attacks)
                     if other.exact
                     and (other.norm, other.eps) == (spec.norm, spec.eps)), None)

    def exact_is_lower_bound(self, index: int, exact: int) -> Check:
        attack, bound = self.outcomes[index], self.outcomes[exact]
        beaten = int((bound & ~attack).sum())
        return check(beaten == 0, accuracy(attack), f">= {accuracy(bound):.6g}",
                     f"{beaten} examples broken although the exact worst case keeps them correct")


def merge_batches(per_batch: list[dict[str, tuple[int | None, Check]]]) -> dict[str, tuple[int | None, Check]]:
    """One check per name over several batches: the first failing batch's, else the first's."""
    merged: dict[str, tuple[int | None, Check]] = {}
    for batch, found in enumerate(per_batch):
        for name, (scope, result) in found.items():
            if name not in merged or (merged[name][1]["passed"] and not result["passed"]):
                detail = result["detail"] + (f" (batch {batch + 1} of {len(per_batch)})"
                                             if len(per_batch) > 1 else "")
                merged[name] = (scope, {**result, "detail": detail})
    return merged


def blackbox_beats_whitebox(
    norm: str, eps: float, clean: torch.Tensor, whitebox: list[torch.Tensor],
    blackbox: list[torch.Tensor], label: str,
) -> Check:
    """Points broken by a black-box attack although every white-box attack left them correct.

    Args: per-example correctness (N,) bool of the clean input, of each white-box attack (or
    white-box part of AutoAttack) and of each black-box one, all of the ball (norm, eps).
    """
    standing = clean.clone()
    for bits in whitebox:
        standing &= bits
    broken_by_blackbox = torch.zeros_like(clean)
    for bits in blackbox:
        broken_by_blackbox |= standing & ~bits
    count = int(broken_by_blackbox.sum())
    return check(count == 0, count, 0,
                 f"{count} of {int(standing.sum())} points that every white-box attack of "
                 f"{norm} eps={eps:.6g} left standing fall to {label}: masked gradients?")
