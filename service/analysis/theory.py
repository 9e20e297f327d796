"""Theorem 2.1's pairs and bound, and f_avg's closed form (E1, Sec. 2.1-2.2).

The definitions here are the science's (``workers.science.theory``, which computes them for
its own checks inside a run; a test checks they agree): the bound is clipped to [0, 1] and
applies against l_inf radii ε ≥ 2η. The report and the dashboard read them from here only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from contract.specs.kinds import TheoryDistribution
from service.analysis.common import MetricFacts, Row, RunFacts, is_clean, metric_value, named

MODEL_ORDER = ("averaging", "svm", "logistic")


def theorem_2_1_bound(p: float, standard_accuracy: float) -> float:
    """Standard accuracy 1 − δ caps adversarial accuracy at p/(1−p)·δ, clipped to [0, 1].

    The paper prints 7/3 for p = 0.7 (Appendix B's last line says 7/2; the algebra gives 7/3).
    """
    return min(1.0, max(0.0, p / (1 - p) * (1 - standard_accuracy)))


def theorem_2_1_applies(dist: TheoryDistribution, eps: float) -> bool:
    """Against l_inf radii ε ≥ 2η (with float slack for "2*eta" typed in a spec)."""
    return eps >= 2 * dist.eta * (1 - 1e-9)


def bound_curve(p: float, points: int = 101) -> list[tuple[float, float]]:
    """(standard accuracy, bound) over [0, 1]: what both the report and the dashboard draw."""
    return [(i / (points - 1), theorem_2_1_bound(p, i / (points - 1))) for i in range(points)]


def averaging_closed_form(dist: TheoryDistribution, eps: float = 0.0) -> float:
    """f_avg's accuracy against the worst l_inf shift ε: Φ((η − ε)√d)."""
    z = (dist.eta - eps) * math.sqrt(dist.d)
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@dataclass(frozen=True)
class TheoryPoint:
    """One trained model at one evaluation radius, with what the theory says beside it."""

    run_id: str
    model: str
    train_eps: float
    eval_eps: float
    accuracy: float
    standard: float
    n: int
    closed_form: float | None
    """f_avg's Φ((η − ε)√d); ``None`` for other models."""
    bound: float | None
    """Theorem 2.1's bound where it applies (l_inf ε ≥ 2η), else ``None``."""


@dataclass(frozen=True)
class TheoryRun:
    run: RunFacts
    dist: TheoryDistribution
    points: list[TheoryPoint]
    """One per model x train_eps x eval_eps (eval_eps 0: standard accuracy)."""
    weights: dict[tuple[str, float], tuple[float | None, float | None]]
    """(model, train_eps) -> (|w1|, ||w_rest||_1)."""
    transfer: list[Row]

    def attacked(self) -> list[TheoryPoint]:
        """The points at ε ≥ 2η, where Theorems 2.1 and 2.2 speak."""
        return [p for p in self.points if p.bound is not None]


def distribution(run: RunFacts) -> TheoryDistribution:
    return TheoryDistribution.model_validate(run.resolved_spec.get("distribution", {}))


def theory_run(run: RunFacts, rows: Sequence[Row],
               metrics: Sequence[MetricFacts] = ()) -> TheoryRun:
    """A theory run's points with closed forms and bounds, its weights and transfer rows."""
    dist = distribution(run)
    main = [r for r in rows if r["run_id"] == run.id and not r["variant"]
            and r["split"] == "test"]
    standard = {(r["model"], float(r["train_eps"])): r["accuracy"] for r in main if is_clean(r)}
    points = []
    for row in main:
        key = (row["model"], float(row["train_eps"]))
        if key not in standard:
            continue
        eps = float(row["eval_eps"] or 0.0)
        applies = (eps > 0 and row["eval_norm"] == "linf" and theorem_2_1_applies(dist, eps))
        points.append(TheoryPoint(
            run.id, row["model"], key[1], eps, row["accuracy"], standard[key], row["n"],
            averaging_closed_form(dist, eps) if row["model"] == "averaging" else None,
            theorem_2_1_bound(dist.p, standard[key]) if applies else None))
    mine = [m for m in metrics if m.run_id == run.id]
    weights = {key: (metric_value(named(mine, "weight_x1"), model=key[0], train_eps=key[1]),
                     metric_value(named(mine, "weight_rest_l1"), model=key[0], train_eps=key[1]))
               for key in standard}
    transfer = [r for r in rows if r["run_id"] == run.id
                and str(r["variant"]).startswith("transfer:")]
    return TheoryRun(run, dist, sorted(points, key=_order), weights, transfer)


def _order(point: TheoryPoint) -> tuple[int, str, float, float]:
    rank = MODEL_ORDER.index(point.model) if point.model in MODEL_ORDER else len(MODEL_ORDER)
    return rank, point.model, point.train_eps, point.eval_eps


def theory_runs(rows: Sequence[Row], runs: Iterable[RunFacts],
                metrics: Sequence[MetricFacts] = ()) -> list[TheoryRun]:
    """Every theory run's points (runs in the order given)."""
    return [theory_run(run, rows, metrics) for run in runs if run.kind == "theory"]


def theory_pairs(items: Iterable[TheoryRun]) -> pd.DataFrame:
    """Adversarial beside standard accuracy of every attacked theory point, with p, η and
    whether Theorem 2.1 applies (the dashboard's theory chart and its download)."""
    records = [asdict(point) | {"experiment": item.run.experiment, "p": item.dist.p,
                                "d": item.dist.d, "eta": item.dist.eta,
                                "bound_applies": point.bound is not None}
               for item in items for point in item.points if point.eval_eps > 0]
    columns = [*TheoryPoint.__dataclass_fields__, "experiment", "p", "d", "eta",
               "bound_applies"]
    return pd.DataFrame(records, columns=columns)
