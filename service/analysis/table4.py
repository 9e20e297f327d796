"""Table 4 and Figure 2(c) (E3): a linear classifier on binary MNIST, 5 vs 7.

Each model's row is read from the newest run that trained it; Figure 2(c)'s points (rows whose
``variant`` is ``topk=K``) likewise per k.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from service.analysis.common import MetricFacts, Row, is_clean, metric_value, named, tag_matches
from service.analysis.pairing import Outcome, row_outcome
from service.analysis.paper import TABLE4_EPS

TOPK_PATTERN = re.compile(r"^topk=(\d+)$")
"""The variant of Figure 2(c)'s rows: standard training on the k most correlated pixels."""


def topk_of(variant: str | None) -> int | None:
    """k of a ``topk=K`` variant; ``None`` for any other."""
    match = TOPK_PATTERN.match(variant or "")
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Table4Row:
    training: str
    """"standard" or "adversarial"."""
    train_eps: float
    cells: tuple[float | None, float | None, float | None, float | None]
    """std train, std test, adv train, adv test (fractions)."""
    n_test: int
    weight_l1: float | None
    low_weight: tuple[float, float] | None
    """(share of |w| on pixels below the correlation threshold, the threshold)."""
    run_id: str
    test_outcomes: tuple[Outcome | None, Outcome | None] = (None, None)
    """The std test and adv test cells' per-example outcomes (for paired comparisons)."""


def table4_rows(rows: Sequence[Row], metrics: Sequence[MetricFacts],
                recency: dict[str, int]) -> list[Table4Row]:
    """Standard training (ε 0) and adversarial training (the ε nearest 0.2) on binary MNIST,
    each row read from the newest run that trained that model."""
    plain = [r for r in rows if r["dataset"] == "binary_mnist" and not r["variant"]
             and r["run_id"] in recency]
    radii = sorted({r["train_eps"] for r in plain if r["train_eps"] > 0},
                   key=lambda eps: abs(eps - TABLE4_EPS))
    chosen = [("standard", 0.0)] + ([("adversarial", radii[0])] if radii else [])
    result = []
    for training, train_eps in chosen:
        trained = [r for r in plain if r["train_eps"] == train_eps]
        if not trained:
            continue
        run_id = min((r["run_id"] for r in trained), key=recency.__getitem__)
        mine = [r for r in trained if r["run_id"] == run_id]
        std_train, std_test, adv_train, adv_test = (
            attacked_cell(mine, split, attacked)
            for attacked in (False, True) for split in ("train", "test"))
        outcomes = tuple(_outcome(attacked_row(mine, "test", attacked))
                         for attacked in (False, True))
        n_test = next((r["n"] for r in mine if r["split"] == "test"), 0)
        own = [m for m in metrics if m.run_id == run_id]
        weight = metric_value(named(own, "weight_l1"), train_eps=float(train_eps))
        low = next(((m.value, m.tags["threshold"])
                    for m in named(own, "low_correlation_weight_fraction")
                    if "threshold" in m.tags and m.value is not None
                    and tag_matches(m.tags.get("train_eps"), float(train_eps))), None)
        result.append(Table4Row(training, train_eps, (std_train, std_test, adv_train, adv_test),
                                n_test, weight, low, run_id, (outcomes[0], outcomes[1])))
    return result


def attacked_cell(rows: Sequence[Row], split: str, attacked: bool) -> float | None:
    """Clean accuracy, or the worst over attacks at the evaluation ε nearest 0.2."""
    row = attacked_row(rows, split, attacked)
    return None if row is None else float(row["accuracy"])


def attacked_row(rows: Sequence[Row], split: str, attacked: bool) -> Row | None:
    """The row of ``attacked_cell``."""
    mine = [r for r in rows if r["split"] == split and (r["eval_eps"] > 0) == attacked
            and (attacked or r["attack"] == "none")]
    if not mine:
        return None
    eps = min({r["eval_eps"] for r in mine}, key=lambda e: abs(e - TABLE4_EPS))
    return min((r for r in mine if r["eval_eps"] == eps), key=lambda r: r["accuracy"])


def _outcome(row: Row | None) -> Outcome | None:
    return None if row is None else row_outcome(row)


@dataclass(frozen=True)
class TopKPoint:
    k: int
    standard: float | None
    adversarial: float | None
    n: int
    run_id: str
    outcome: Outcome | None = None
    """The adversarial accuracy's per-example outcomes (for paired comparisons)."""


def topk_points(rows: Sequence[Row], recency: dict[str, int]) -> list[TopKPoint]:
    """Fig. 2(c): standard training on the k most label-correlated pixels, each k read from
    the newest run that has it; adversarial is the worst attack at the ε nearest 0.2."""
    by_k: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        k = topk_of(row["variant"])
        if k is not None and row["split"] == "test" and row["run_id"] in recency:
            by_k[k].append(row)
    points = []
    for k, tagged in sorted(by_k.items()):
        run_id = min((r["run_id"] for r in tagged), key=recency.__getitem__)
        mine = [r for r in tagged if r["run_id"] == run_id]
        clean = next((r["accuracy"] for r in mine if is_clean(r)), None)
        worst = attacked_row(mine, "test", attacked=True)
        points.append(TopKPoint(k, clean, None if worst is None else float(worst["accuracy"]),
                                mine[0]["n"], run_id, _outcome(worst)))
    return points


def topk_frame(points: Sequence[TopKPoint]) -> pd.DataFrame:
    """Long form for charts: one row per k and series ("standard", "adversarial")."""
    records = [{"k": p.k, "series": series, "accuracy": value, "n": p.n, "run_id": p.run_id}
               for p in points
               for series, value in (("standard", p.standard), ("adversarial", p.adversarial))
               if value is not None]
    return pd.DataFrame(records, columns=["k", "series", "accuracy", "n", "run_id"])
