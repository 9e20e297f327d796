"""Robust overfitting (Rice et al. 2020): the validation curve of a run, the epoch its
``training.select`` chose, and test robust accuracy at that epoch against the last.

Rice et al.'s PreActResNet-18 log reads 53.49% PGD accuracy at its best epoch and 45.59% at
its last: picking the final weights costs eight points, and picking the best epoch *by test
accuracy* reports a number selected on the test set. robustlab selects on a held-out
validation split (``dataset.validation``), so the best epoch is chosen without the test set;
this module puts the two checkpoints side by side for the report and the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from service.analysis.common import MetricFacts, Row, RunFacts

VALIDATION_METRICS = ("val_accuracy", "val_robust_accuracy")
"""The per-epoch metrics of a run with ``dataset.validation`` (step = epoch)."""


@dataclass(frozen=True)
class CurvePoint:
    epoch: int
    val_accuracy: float | None
    val_robust_accuracy: float | None


@dataclass(frozen=True)
class OverfitRun:
    """One run's validation curve and its best and final checkpoints."""

    run_id: str
    experiment: str
    curve: list[CurvePoint]
    best_epoch: int | None
    """The epoch ``training.select`` chose (its provenance), else the validation argmax."""
    metric: str
    """What the best epoch maximises: val_robust_accuracy (best_robust) or val_accuracy."""
    test_best: float | None
    """Test accuracy of the best checkpoint under ``attack`` (null: not evaluated)."""
    test_final: float | None
    attack: str | None
    """The attack compared: the strongest one both checkpoints were evaluated with."""

    @property
    def final_epoch(self) -> int:
        return self.curve[-1].epoch

    def value_at(self, epoch: int | None) -> float | None:
        point = next((p for p in self.curve if p.epoch == epoch), None)
        return None if point is None else getattr(point, self.metric)


def overfit_runs(runs: Sequence[RunFacts], rows: Sequence[Row],
                 metrics: Iterable[MetricFacts]) -> list[OverfitRun]:
    """Every run that recorded a validation curve, in the order of ``runs``."""
    curves: dict[str, dict[int, dict[str, float | None]]] = {}
    for metric in metrics:
        if metric.name in VALIDATION_METRICS:
            step = int(getattr(metric, "step", 0))
            curves.setdefault(metric.run_id, {}).setdefault(step, {})[metric.name] = metric.value
    found = []
    for run in runs:
        by_epoch = curves.get(run.id)
        if not by_epoch:
            continue
        curve = [CurvePoint(epoch, values.get("val_accuracy"), values.get("val_robust_accuracy"))
                 for epoch, values in sorted(by_epoch.items())]
        selected = run.provenance.get("selected") or {}
        chosen = str(selected.get("metric") or "val_robust_accuracy")
        if chosen not in VALIDATION_METRICS:
            chosen = "val_robust_accuracy"
        best_epoch = selected.get("epoch")
        if best_epoch is None:
            best_epoch = _argmax(curve, chosen)
        attack, best, final = _test_pair([row for row in rows if row["run_id"] == run.id])
        found.append(OverfitRun(run.id, run.experiment, curve, best_epoch, chosen, best, final,
                                attack))
    return found


def _argmax(curve: Sequence[CurvePoint], metric: str) -> int | None:
    """The first epoch with the highest value (ties go to the earlier epoch)."""
    scored = [(getattr(point, metric), -point.epoch) for point in curve
              if getattr(point, metric) is not None]
    return -max(scored)[1] if scored else None


def _test_pair(rows: Sequence[Row]) -> tuple[str | None, float | None, float | None]:
    """(attack, best, final): test accuracy of both checkpoints under the strongest attack
    that evaluated both; with one checkpoint evaluated, its strongest attack alone."""
    attacked: dict[tuple[str, str | None, float, str], dict[str, float]] = {}
    for row in rows:
        if row["split"] != "test" or row["attack"] == "none":
            continue
        key = (row["attack"], row["eval_norm"], row["eval_eps"], row.get("variant") or "")
        attacked.setdefault(key, {})[row.get("checkpoint") or "final"] = row["accuracy"]
    if not attacked:
        return None, None, None
    both = [key for key, by in attacked.items() if {"best", "final"} <= set(by)]
    pool = both or list(attacked)
    key = min(pool, key=lambda k: min(attacked[k].values()))
    name = f"{key[0]}{'/' + key[3] if key[3] else ''} {key[1] or ''} {key[2]:g}".replace("  ", " ")
    return name, attacked[key].get("best"), attacked[key].get("final")
