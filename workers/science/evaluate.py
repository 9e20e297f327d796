"""Evaluation: clean accuracy, accuracy under each attack, the per-example worst case, checks.

An example counts as correct under an attack only if the model is right both at ``x`` and at
the attack's point: ``x`` itself lies in every ball, so the adversary may always return it
(AutoAttack attacks only the clean-correct points for the same reason). Per example,
correctness is kept as bool tensors, so attacks of one threat model combine into their
pointwise worst case (``worst_case``), and records carry the bits (``numpy.packbits``).

Every evaluation also runs validity checks on its first batch (Carlini et al. 2019, "On
evaluating adversarial robustness", lists these symptoms of a broken evaluation):

- ``eps0_equals_clean``: PGD at eps 0 classifies exactly like the clean forward pass;
- ``more_steps[...]``: a PGD attack is never beaten by a cheaper run of itself (half the
  steps, one restart, the same random start), example by example;
- ``no_weaker_than_fgsm[...]``: l_inf PGD is at least as strong as FGSM at the same eps;
- ``large_eps[...]``: a very large ball (l_inf 0.5, l_2 0.5 sqrt(D), which contains it) brings a
  model that is clearly better than chance to <= 5% accuracy; otherwise its gradients are
  probably masked;
- ``exact_is_lower_bound[...]``: no attack beats the exact linear worst case of the same ball.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from service.specs.models import ExactLinearAttack, FGSMAttack, PGDAttack
from workers.science.attacks import exact_linear_attack, fgsm, pgd
from workers.science.attacks.common import attack_mode
from workers.science.losses import correct, is_binary
from workers.science.records import Cancelled, EvaluationRecord

AttackSpec = PGDAttack | FGSMAttack | ExactLinearAttack
Check = dict[str, Any]
"""{"passed": bool, "value": ..., "expected": ..., "detail": str}."""

LARGE_EPS_LINF = 0.5
"""Half the pixel range: the ball reaches the mid-grey image from every input."""
LARGE_EPS_STEPS = 20
LARGE_EPS_MAX_ACCURACY = 0.05
EPS0_MAX_STEPS = 10
"""The eps-0 check needs no more iterations than this to show a broken projection."""


# --------------------------------------------------------------------------- results


def attack_label(spec: AttackSpec) -> str:
    """A short readable name of an attack configuration, used in check names and details."""
    text = f"{spec.kind} {spec.norm} eps={spec.eps:.6g}"
    if isinstance(spec, PGDAttack):
        text += f" steps={spec.steps} restarts={spec.restarts}"
    return text


def pack_correct(correct_bits: torch.Tensor) -> bytes:
    """Per-example correctness (N,) bool -> bytes (``numpy.packbits``, big-endian bit order)."""
    return np.packbits(correct_bits.cpu().numpy().astype(bool)).tobytes()


def unpack_correct(data: bytes, n: int) -> np.ndarray:
    """Inverse of ``pack_correct``: (n,) bool."""
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool)


@dataclass(frozen=True)
class AttackOutcome:
    """One configured attack's per-example correctness (N,) bool, on the CPU."""

    spec: AttackSpec
    correct: torch.Tensor

    @property
    def accuracy(self) -> float:
        return _accuracy(self.correct)


@dataclass
class EvaluationResult:
    """What ``evaluate`` measured: clean and per-attack correctness, and the validity checks."""

    clean: torch.Tensor
    """(N,) bool: correct on the clean input."""
    attacks: list[AttackOutcome]
    checks: dict[str, Check] = field(default_factory=dict)
    check_scope: dict[str, int | None] = field(default_factory=dict)
    """Check name -> index of the attack it is about, or None for the whole evaluation."""

    @property
    def n(self) -> int:
        return int(self.clean.shape[0])

    @property
    def clean_accuracy(self) -> float:
        return _accuracy(self.clean)

    def threat_groups(self) -> dict[tuple[str, float], list[int]]:
        """(norm, eps) -> indices of the attacks in that ball, in configuration order."""
        groups: dict[tuple[str, float], list[int]] = {}
        for index, outcome in enumerate(self.attacks):
            groups.setdefault((outcome.spec.norm, outcome.spec.eps), []).append(index)
        return groups

    def worst_case(self, norm: str, eps: float) -> torch.Tensor:
        """(N,) bool: correct under every attack of the (norm, eps) ball (and clean)."""
        indices = self.threat_groups()[(norm, eps)]
        return torch.stack([self.attacks[i].correct for i in indices]).all(dim=0) & self.clean

    def checks_for(self, indices: Sequence[int] | None) -> dict[str, Check]:
        """The evaluation-wide checks plus those about the attacks ``indices`` (None: all)."""
        return {
            name: check for name, check in self.checks.items()
            if indices is None or self.check_scope.get(name) is None
            or self.check_scope[name] in indices
        }

    def to_records(
        self, model_name: str, dataset: str, split: str, train_norm: str | None, train_eps: float
    ) -> list[EvaluationRecord]:
        """One record for clean accuracy, one per attack, one worst case per (norm, eps) ball."""

        def record(accuracy_bits: torch.Tensor, **fields: Any) -> EvaluationRecord:
            return EvaluationRecord(
                model=model_name, dataset=dataset, split=split, train_norm=train_norm,
                train_eps=train_eps, accuracy=_accuracy(accuracy_bits), n=self.n,
                per_example=pack_correct(accuracy_bits), **fields,
            )

        records = [record(self.clean, attack="none", checks=self.checks_for(None))]
        for index, outcome in enumerate(self.attacks):
            records.append(record(outcome.correct, checks=self.checks_for([index]),
                                  **_attack_fields(outcome.spec)))
        for (norm, eps), indices in self.threat_groups().items():
            records.append(record(
                self.worst_case(norm, eps), attack="worst_case", eval_norm=norm, eval_eps=eps,
                checks=self.checks_for(indices),
                details={"attacks": [attack_label(self.attacks[i].spec) for i in indices]},
            ))
        return records


def _attack_fields(spec: AttackSpec) -> dict[str, Any]:
    """The record columns that describe an attack configuration."""
    fields: dict[str, Any] = {"attack": spec.kind, "eval_norm": spec.norm, "eval_eps": spec.eps}
    if isinstance(spec, PGDAttack):
        fields.update(steps=spec.steps, step_size=spec.resolved_step_size,
                      restarts=spec.restarts, details={"random_start": spec.random_start})
    elif isinstance(spec, FGSMAttack):
        fields.update(steps=1, step_size=spec.eps, restarts=1)
    return fields


def _accuracy(bits: torch.Tensor) -> float:
    return float(bits.float().mean()) if bits.numel() else 0.0


# --------------------------------------------------------------------------- running attacks


def attack_seed(seed: int, batch: int, attack: int) -> int:
    """The random-start seed of one attack on one batch: independent of every other pair."""
    return int(np.random.SeedSequence([seed, batch, attack]).generate_state(1)[0])


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def run_attack(
    spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The adversarial inputs (B, C, H, W) that the configured attack finds for (x, y)."""
    if isinstance(spec, PGDAttack):
        return pgd(model, x, y, norm=spec.norm, eps=spec.eps, step_size=spec.resolved_step_size,
                   steps=spec.steps, random_start=spec.random_start, restarts=spec.restarts,
                   early_stop=True, generator=generator)
    if isinstance(spec, FGSMAttack):
        return fgsm(model, x, y, eps=spec.eps)
    return exact_linear_attack(model, x, y, norm=spec.norm, eps=spec.eps).x_adv


def _correct_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return correct(model(x), y)


# --------------------------------------------------------------------------- evaluate


def evaluate(
    model: nn.Module,
    data: Dataset,
    attacks: Sequence[AttackSpec],
    *,
    device: torch.device,
    batch_size: int = 256,
    checks: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> EvaluationResult:
    """Clean accuracy, accuracy under each attack, per-example worst cases and validity checks.

    Args:
        model: maps [0, 1] images to logits; run in eval mode, its mode restored afterwards.
        data: items (x (C, H, W) in [0, 1], y), read in order.
        attacks: attack specs (``PGDAttack``, ``FGSMAttack``, ``ExactLinearAttack``).
        device: where the model and the batches go.
        batch_size: examples per batch. (Default: 256)
        checks: run the validity checks on the first batch. (Default: True)
        should_stop: polled before every batch; True raises ``Cancelled``.
        on_batch: called as ``on_batch(batches_done, batches)`` after every batch.
        seed: seeds the random starts (per batch and attack), so results are reproducible.
    """
    model = model.to(device)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    clean_parts: list[torch.Tensor] = []
    attack_parts: list[list[torch.Tensor]] = [[] for _ in attacks]
    first_batch: tuple[torch.Tensor, torch.Tensor] | None = None
    with attack_mode(model):
        for batch, (x, y) in enumerate(loader):
            if should_stop is not None and should_stop():
                raise Cancelled("evaluation cancelled")
            x, y = x.to(device), y.to(device)  # (B, C, H, W), (B,)
            clean = _correct_at(model, x, y)  # (B,)
            for index, spec in enumerate(attacks):
                generator = _generator(attack_seed(seed, batch, index), device)
                x_adv = run_attack(spec, model, x, y, generator)
                attack_parts[index].append((_correct_at(model, x_adv, y) & clean).cpu())
            clean_parts.append(clean.cpu())
            if first_batch is None:
                first_batch = (x, y)
            if on_batch is not None:
                on_batch(batch + 1, len(loader))
        outcomes = [AttackOutcome(spec, _cat(parts))
                    for spec, parts in zip(attacks, attack_parts, strict=True)]
        result = EvaluationResult(clean=_cat(clean_parts), attacks=outcomes)
        if checks and first_batch is not None:
            _ValidityChecks(model, *first_batch, list(attacks), result, seed).run()
    return result


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


# --------------------------------------------------------------------------- validity checks


def _check(passed: bool, value: Any, expected: Any, detail: str) -> Check:
    return {"passed": bool(passed), "value": value, "expected": expected, "detail": detail}


@dataclass
class _ValidityChecks:
    """The checks of one evaluation, run on its first batch (x, y); results go into ``result``."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    attacks: list[AttackSpec]
    result: EvaluationResult
    seed: int
    clean: torch.Tensor = field(init=False)
    """(B,) bool on the CPU: clean correctness on the first batch."""

    def __post_init__(self) -> None:
        self.clean = self.result.clean[: self.x.shape[0]]

    def run(self) -> None:
        self._add("eps0_equals_clean", None, self.eps0_equals_clean())
        for norm in sorted({spec.norm for spec in self.attacks} or {"linf"}):
            self._add(f"large_eps[{norm}]", None, self.large_eps(norm))
        for index, spec in enumerate(self.attacks):
            label = attack_label(spec)
            if isinstance(spec, PGDAttack) and (spec.steps > 1 or spec.restarts > 1):
                self._add(f"more_steps[{label}]", index, self.more_steps(index, spec))
            if isinstance(spec, PGDAttack) and spec.norm == "linf" and spec.eps > 0:
                self._add(f"no_weaker_than_fgsm[{label}]", index, self.no_weaker_than_fgsm(index, spec))
            exact = self._exact_index(spec)
            if exact is not None:
                self._add(f"exact_is_lower_bound[{label}]", index, self.exact_is_lower_bound(index, exact))

    def _add(self, name: str, scope: int | None, check: Check) -> None:
        self.result.checks[name] = check
        self.result.check_scope[name] = scope

    def _first_batch(self, index: int) -> torch.Tensor:
        return self.result.attacks[index].correct[: self.x.shape[0]]

    def _correct_under(self, spec: AttackSpec, seed: int) -> torch.Tensor:
        """(B,) bool on the CPU: correct at x and at the attack's point, on the first batch."""
        x_adv = run_attack(spec, self.model, self.x, self.y, _generator(seed, self.x.device))
        return (_correct_at(self.model, x_adv, self.y) & self.clean.to(self.x.device)).cpu()

    def eps0_equals_clean(self) -> Check:
        pgd_specs = [spec for spec in self.attacks if isinstance(spec, PGDAttack)]
        base = pgd_specs[0] if pgd_specs else PGDAttack(norm="linf", eps=0.0, steps=5)
        spec = base.model_copy(update={
            "eps": 0.0, "steps": min(base.steps, EPS0_MAX_STEPS), "restarts": 1,
            "random_start": True, "step_size": base.resolved_step_size or 0.01,
        })
        x_adv = run_attack(spec, self.model, self.x, self.y, _generator(self.seed, self.x.device))
        raw = _correct_at(self.model, x_adv, self.y).cpu()  # not and-ed with clean: compared to it
        differ = int((raw != self.clean).sum())
        return _check(differ == 0, _accuracy(raw), _accuracy(self.clean),
                      f"{differ} of {raw.numel()} examples classified differently at eps 0")

    def large_eps(self, norm: str) -> Check:
        eps = LARGE_EPS_LINF if norm == "linf" else LARGE_EPS_LINF * math.sqrt(self.x[0].numel())
        clean_accuracy = _accuracy(self.clean)
        floor = self._nontrivial_accuracy()
        if clean_accuracy <= floor:
            return _check(True, clean_accuracy, f"> {floor:.3g} to apply",
                          "not applicable: clean accuracy too close to chance")
        spec = PGDAttack.model_validate({"norm": norm, "eps": eps, "steps": LARGE_EPS_STEPS})
        accuracy = _accuracy(self._correct_under(spec, self.seed))
        return _check(accuracy <= LARGE_EPS_MAX_ACCURACY, accuracy, f"<= {LARGE_EPS_MAX_ACCURACY}",
                      f"PGD {norm} eps={eps:.4g}, {LARGE_EPS_STEPS} steps; a higher accuracy "
                      "suggests masked gradients")

    def _nontrivial_accuracy(self) -> float:
        """Clean accuracy above which a model counts as non-trivial: 2x chance; 0.75 if binary."""
        with torch.no_grad():
            logits = self.model(self.x[:1])
        return 0.75 if is_binary(logits) else 2.0 / logits.shape[1]

    def more_steps(self, index: int, spec: PGDAttack) -> Check:
        cheap = spec.model_copy(update={
            "steps": max(1, spec.steps // 2), "restarts": 1, "step_size": spec.resolved_step_size,
        })
        # The same seed as the main run on this batch: its first restart starts where cheap does.
        cheap_correct = self._correct_under(cheap, attack_seed(self.seed, 0, index))
        full = self._first_batch(index)
        raised = int((full & ~cheap_correct).sum())
        return _check(raised == 0, _accuracy(full), f"<= {_accuracy(cheap_correct):.6g}",
                      f"{raised} examples survive the full attack but not {attack_label(cheap)}")

    def no_weaker_than_fgsm(self, index: int, spec: PGDAttack) -> Check:
        fgsm_accuracy = _accuracy(self._correct_under(FGSMAttack(eps=spec.eps), self.seed))
        accuracy = _accuracy(self._first_batch(index))
        return _check(accuracy <= fgsm_accuracy, accuracy, f"<= {fgsm_accuracy:.6g}",
                      f"FGSM eps={spec.eps:.6g} on the first batch")

    def _exact_index(self, spec: AttackSpec) -> int | None:
        """The configured exact linear attack of the same ball as ``spec``, if any."""
        if isinstance(spec, ExactLinearAttack):
            return None
        return next((i for i, other in enumerate(self.attacks)
                     if isinstance(other, ExactLinearAttack)
                     and (other.norm, other.eps) == (spec.norm, spec.eps)), None)

    def exact_is_lower_bound(self, index: int, exact: int) -> Check:
        attack, bound = self.result.attacks[index].correct, self.result.attacks[exact].correct
        beaten = int((bound & ~attack).sum())
        return _check(beaten == 0, _accuracy(attack), f">= {_accuracy(bound):.6g}",
                      f"{beaten} examples broken although the exact worst case keeps them correct")
