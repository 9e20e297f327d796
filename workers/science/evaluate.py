"""Evaluation: clean accuracy, accuracy under each attack, the per-example worst case, checks.

An example counts as correct under an attack only if the model is right both at ``x`` and at
the attack's point: ``x`` itself lies in every ball, so the adversary may always return it
(AutoAttack attacks only the clean-correct points for the same reason). Per example,
correctness is kept as bool tensors, so attacks of one threat model combine into their
pointwise worst case (``worst_case``), and records carry the bits (``numpy.packbits``).

AutoAttack gives one record for the ensemble (``attack="autoattack"``) and one per component
(``variant`` "apgd-ce", "apgd-t", "fab-t", "square"), each with the accuracy left after it and
every component before it, and its seconds.

The validity checks (``workers.science.evaluation_checks``) run on the first batch, on every
batch (``checks="all"``) or not at all (``"off"``); what they cost is logged as
``checks: +N forward-backward passes`` and kept on the clean record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from contract.records import Cancelled, EvaluationRecord
from contract.specs.attacks import AttackSpec
from workers.science.attacks.autoattack import BLACKBOX
from workers.science.attacks.common import attack_mode, synchronize
from workers.science.attacks.registry import run_attack_spec
from workers.science.distributed import SINGLE, World, gather_objects
from workers.science.evaluation_checks import (
    BatchChecks,
    Check,
    CountingPasses,
    blackbox_beats_whitebox,
    merge_batches,
)
from workers.science.losses import correct

log = logging.getLogger(__name__)

ChecksScope = Literal["first_batch", "all", "off"]


# --------------------------------------------------------------------------- results


def attack_label(spec: AttackSpec) -> str:
    """A short readable name of an attack configuration, used in check names and details."""
    return spec.label()


def pack_correct(correct_bits: torch.Tensor) -> bytes:
    """Per-example correctness (N,) bool -> bytes (``numpy.packbits``, big-endian bit order)."""
    return np.packbits(correct_bits.cpu().numpy().astype(bool)).tobytes()


def unpack_correct(data: bytes, n: int) -> np.ndarray:
    """Inverse of ``pack_correct``: (n,) bool."""
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool)


@dataclass(frozen=True)
class ComponentResult:
    """One AutoAttack component over the whole evaluation."""

    name: str
    correct: torch.Tensor
    """(N,) bool: correct after this component and every earlier one (and clean)."""
    seconds: float


@dataclass(frozen=True)
class AttackOutcome:
    """One configured attack's per-example correctness (N,) bool, on the CPU."""

    spec: AttackSpec
    correct: torch.Tensor
    seconds: float = 0.0
    components: tuple[ComponentResult, ...] = ()
    """AutoAttack only: its components in the order they ran."""

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
    check_cost: dict[str, int] = field(default_factory=dict)
    """forward_passes / example_passes the checks spent, and the evaluation's own."""

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
        self, model_name: str, dataset: str, split: str, train_norm: str | None,
        train_eps: float | None,
    ) -> list[EvaluationRecord]:
        """One record for clean accuracy, one per attack (and AutoAttack component), one worst
        case per (norm, eps) ball."""

        def record(accuracy_bits: torch.Tensor, **fields: Any) -> EvaluationRecord:
            return EvaluationRecord(
                model=model_name, dataset=dataset, split=split, train_norm=train_norm,
                train_eps=train_eps, accuracy=_accuracy(accuracy_bits), n=self.n,
                per_example=pack_correct(accuracy_bits), **fields,
            )

        records = [record(self.clean, attack="none", checks=self.checks_for(None),
                          details={"check_cost": dict(self.check_cost)} if self.check_cost else {})]
        for index, outcome in enumerate(self.attacks):
            fields = outcome.spec.record_fields()
            fields["details"] = {**fields.get("details", {}), "seconds": round(outcome.seconds, 3)}
            records.append(record(outcome.correct, checks=self.checks_for([index]), **fields))
            for order, component in enumerate(outcome.components):
                fields = outcome.spec.component_fields(component.name, order, component.seconds)
                records.append(record(component.correct, checks=self.checks_for([index]),
                                      **fields))
        for (norm, eps), indices in self.threat_groups().items():
            records.append(record(
                self.worst_case(norm, eps), attack="worst_case", eval_norm=norm, eval_eps=eps,
                checks=self.checks_for(indices),
                details={"attacks": [attack_label(self.attacks[i].spec) for i in indices]},
            ))
        return records


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
    return run_attack_spec(spec, model, x, y, generator).x_adv


def _correct_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return correct(model(x), y)


@dataclass
class _Parts:
    """Per-batch pieces of one attack's outcome, keyed by global batch index (a rank of a
    sharded evaluation holds only its own batches), concatenated in batch order at the end."""

    correct: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0
    components: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    component_seconds: dict[str, float] = field(default_factory=dict)

    def add(self, batch: int, spec: AttackSpec, model: nn.Module, x: torch.Tensor,
            y: torch.Tensor, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Run ``spec`` on batch ``batch``, keep its (B,) correctness (CPU) and return it."""
        synchronize(x.device)
        started = time.perf_counter()
        found = run_attack_spec(spec, model, x, y, generator)
        robust = found.robust if found.robust is not None else _correct_at(model, found.x_adv, y)
        bits = (robust & clean).cpu()
        for component in found.components:
            self.components.setdefault(component.name, {})[batch] = (
                component.robust & clean).cpu()
            self.component_seconds[component.name] = (
                self.component_seconds.get(component.name, 0.0) + component.seconds)
        synchronize(x.device)
        self.seconds += time.perf_counter() - started
        self.correct[batch] = bits
        return bits

    def merge(self, other: _Parts) -> None:
        """Take in another rank's batches (seconds add up: compute time over every rank)."""
        self.correct.update(other.correct)
        self.seconds += other.seconds
        for name, parts in other.components.items():
            self.components.setdefault(name, {}).update(parts)
            self.component_seconds[name] = (self.component_seconds.get(name, 0.0)
                                            + other.component_seconds[name])

    def outcome(self, spec: AttackSpec) -> AttackOutcome:
        components = tuple(ComponentResult(name, _in_order(parts), self.component_seconds[name])
                           for name, parts in self.components.items())
        return AttackOutcome(spec, _in_order(self.correct), self.seconds, components)


def _in_order(parts: dict[int, torch.Tensor]) -> torch.Tensor:
    return _cat([parts[batch] for batch in sorted(parts)])


# --------------------------------------------------------------------------- evaluate


def evaluate(
    model: nn.Module,
    data: Dataset,
    attacks: Sequence[AttackSpec],
    *,
    device: torch.device,
    batch_size: int = 256,
    checks: ChecksScope | bool = "first_batch",
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    seed: int = 0,
    world: World = SINGLE,
) -> EvaluationResult:
    """Clean accuracy, accuracy under each attack, per-example worst cases and validity checks.

    Sharded over the ranks of a distributed run by whole batches: batch b is evaluated by
    rank b mod W exactly as one process would (its random starts are seeded by (seed, b,
    attack)), and the per-example outcomes are gathered in index order, so every rank returns
    the result of a one-process evaluation, example by example.

    Args:
        model: maps [0, 1] images to logits; run in eval mode, its mode restored afterwards.
        data: items (x (C, H, W) in [0, 1], y), read in order.
        attacks: attack specs (``PGDAttack``, ``APGDAttack``, ``AutoAttack``, ...).
        device: where the model and the batches go.
        batch_size: examples per batch. (Default: 256)
        checks: validity checks on the "first_batch", on "all" batches, or "off"; True and
            False mean first_batch and off. (Default: "first_batch")
        should_stop: polled before every batch; True raises ``Cancelled``.
        on_batch: called as ``on_batch(batches_done, batches)`` after every batch of this rank.
        seed: seeds the random starts (per batch and attack), so results are reproducible.
        world: this process's rank of a distributed run (default: one process).
    """
    scope: ChecksScope = ("first_batch" if checks else "off") if isinstance(checks, bool) else checks
    model = model.to(device)
    mine = _rank_batches(len(data), batch_size, world)  # type: ignore[arg-type]
    loader = DataLoader(data, batch_sampler=[indices for _, indices in mine])
    clean_parts: dict[int, torch.Tensor] = {}
    parts = [_Parts() for _ in attacks]
    found: list[dict[str, tuple[int | None, Check]]] = []
    spent, own = CountingPasses(), CountingPasses()
    with attack_mode(model):
        for done, ((batch, _), (x, y)) in enumerate(zip(mine, loader, strict=True)):
            if should_stop is not None and should_stop():
                raise Cancelled("evaluation cancelled")
            x, y = x.to(device), y.to(device)  # (B, C, H, W), (B,)
            with own.on(model):
                clean = _correct_at(model, x, y)  # (B,)
                bits = [part.add(batch, spec, model, x, y, clean,
                                 _generator(attack_seed(seed, batch, index), device))
                        for index, (spec, part) in enumerate(zip(attacks, parts, strict=True))]
            clean_parts[batch] = clean.cpu()
            if scope == "all" or (scope == "first_batch" and batch == 0):
                with spent.on(model):
                    found.append(_batch_checks(model, x, y, list(attacks), clean.cpu(), bits,
                                               seed, batch).run())
            if on_batch is not None:
                on_batch(done + 1, len(mine))
    if world.distributed:
        clean_parts, parts, found = _gathered(clean_parts, parts, found, spent, own, world)
    outcomes = [part.outcome(spec) for spec, part in zip(attacks, parts, strict=True)]
    result = EvaluationResult(clean=_in_order(clean_parts), attacks=outcomes)
    for name, (index, check) in merge_batches(found).items():
        result.checks[name], result.check_scope[name] = check, index
    if scope != "off":
        _add_blackbox_checks(result)
        result.check_cost = {"forward_passes": spent.calls, "example_passes": spent.examples,
                             "evaluation_forward_passes": own.calls,
                             "evaluation_example_passes": own.examples}
        log.info("checks: +%d forward-backward passes (%d example passes; the evaluation "
                 "itself: %d, %d) on %s", spent.calls, spent.examples, own.calls, own.examples,
                 "every batch" if scope == "all" else "the first batch")
    return result


def _rank_batches(n: int, batch_size: int, world: World) -> list[tuple[int, list[int]]]:
    """(global batch index, example indices) of the batches rank ``world.rank`` evaluates."""
    return [(batch, list(range(start, min(start + batch_size, n))))
            for batch, start in enumerate(range(0, n, batch_size))
            if batch % world.size == world.rank]


def _gathered(clean: dict[int, torch.Tensor], parts: list[_Parts],
              found: list[dict[str, tuple[int | None, Check]]], spent: CountingPasses,
              own: CountingPasses, world: World,
              ) -> tuple[dict[int, torch.Tensor], list[_Parts],
                         list[dict[str, tuple[int | None, Check]]]]:
    """Every rank's batches, checks and pass counts, merged on every rank in batch order."""
    everyone = gather_objects((clean, parts, found, spent.calls, spent.examples, own.calls,
                               own.examples), world)
    merged_clean: dict[int, torch.Tensor] = {}
    merged = [_Parts() for _ in parts]
    merged_found: list[dict[str, tuple[int | None, Check]]] = []
    spent.calls = spent.examples = own.calls = own.examples = 0
    for rank_clean, rank_parts, rank_found, *counts in everyone:
        merged_clean.update(rank_clean)
        for total, part in zip(merged, rank_parts, strict=True):
            total.merge(part)
        merged_found += rank_found
        spent.calls += counts[0]
        spent.examples += counts[1]
        own.calls += counts[2]
        own.examples += counts[3]
    return merged_clean, merged, merged_found


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


def _batch_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[AttackSpec],
                  clean: torch.Tensor, outcomes: list[torch.Tensor], seed: int,
                  batch: int) -> BatchChecks:
    def attack_point(spec: Any, attack_seed_: int) -> torch.Tensor:
        return run_attack(spec, model, x, y, _generator(attack_seed_, x.device))

    return BatchChecks(model=model, x=x, y=y, attacks=attacks, clean=clean, outcomes=outcomes,
                       attack_point=attack_point, seed=seed,
                       seed_of_attack=lambda index: attack_seed(seed, batch, index),
                       label=attack_label)


def _add_blackbox_checks(result: EvaluationResult) -> None:
    """``blackbox_beats_whitebox`` per ball holding a black-box attack and a white-box one.

    Free: it compares the per-example results already measured, on every example.
    """
    for (norm, eps), indices in result.threat_groups().items():
        whitebox: list[torch.Tensor] = []
        blackbox: list[torch.Tensor] = []
        source: int | None = None  # the attack holding the (first) black-box result
        for index in indices:
            outcome = result.attacks[index]
            if outcome.spec.blackbox:
                blackbox.append(outcome.correct)
                source = index if source is None else source
            elif outcome.components:  # AutoAttack: white-box parts, then its black box
                names = [c.name for c in outcome.components]
                split = next((i for i, n in enumerate(names) if n in BLACKBOX), len(names))
                if split > 0:  # cumulative: correct after every white-box part before it
                    whitebox.append(outcome.components[split - 1].correct)
                if split < len(names):
                    blackbox.append(outcome.components[split].correct)
                    source = index if source is None else source
            else:
                whitebox.append(outcome.correct)
        if whitebox and blackbox:
            name = f"blackbox_beats_whitebox[{norm} eps={eps:.6g}]"
            result.checks[name] = blackbox_beats_whitebox(norm, eps, result.clean, whitebox,
                                                          blackbox, "the Square Attack")
            result.check_scope[name] = source
