"""Figure 1: standard (and adversarial) test accuracy against the training ε.

Aggregation, the one rule for the report and the dashboard:

1. Only ``train`` runs on image datasets (not binary MNIST, Table 4's, nor the theory's
   D(p, d, η)), test split, no variant.
2. A *cell* is (experiment, dataset, model, train_method, train_norm, train_eps). Experiments
   are never mixed: the quickstart's small CNN is not E2's.
3. Within a cell, runs whose resolved specs differ only by the seed are repeats. The newest
   such group (the newest spec) is used; older specs of the cell are left out.
4. Each point is the mean ± sample std over the repeats of that group; ``n`` is the test
   examples behind the mean (summed), ``seeds`` how many runs.
5. Every attack gives its own points (``attack`` "none" is standard accuracy); a run with
   several evaluations of one attack at one radius (e.g. PGD with 20 and 100 steps) counts
   its worst.
6. TRADES runs are told apart by β (``adversary.beta``): each β is its own curve, labelled
   ``trades β=B`` in ``train_method``, so a β sweep traces the frontier instead of collapsing
   into its newest β.
7. A curve without an ε_train-0 cell borrows the experiment's standard model (of the same
   training method first, else of another: standard training is the same for every norm and
   method), recorded under no norm or under another norm.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from service.analysis.common import Row, RunFacts, is_clean, mean_std, norm_rank, spec_key
from service.analysis.pairing import Outcome, row_outcome

NON_FIGURE1_DATASETS = frozenset({"theory", "binary_mnist"})
"""Not Figure 1's: the theory's Gaussian features and Table 4's binary MNIST."""
DATASET_ORDER = ("mnist", "fashion_mnist", "cifar10", "restricted_imagenet")
STANDARD_NORM = "standard"
"""The norm of a curve made only of standard models recorded without a training norm."""

Cell = tuple[str, str, str, str | None, str | None, float]
"""(experiment, dataset, model, train_method, train_norm, train_eps)."""
CurveKey = tuple[str, str, str, str | None, str]
"""(dataset, norm, experiment, train_method, model): one line of Figure 1."""


@dataclass(frozen=True)
class Figure1Point:
    """One accuracy of one curve at one ε_train, aggregated over repeats."""

    dataset: str
    train_norm: str
    experiment: str
    train_method: str | None
    model: str
    train_eps: float
    attack: str
    """"none" for standard accuracy."""
    eval_norm: str | None
    eval_eps: float
    accuracy: float
    """Mean over the repeats."""
    accuracy_std: float | None
    """Sample standard deviation over the repeats; ``None`` for one run."""
    seeds: int
    n: int
    """Test examples behind the mean (summed over the repeats)."""
    run_ids: tuple[str, ...]
    outcome: Outcome | None = field(default=None, repr=False, compare=False)
    """The per-example outcomes where one run measured the point (paired comparisons)."""

    @property
    def curve(self) -> CurveKey:
        return (self.dataset, self.train_norm, self.experiment, self.train_method, self.model)

    @property
    def standard(self) -> bool:
        return self.attack == "none" and self.eval_eps == 0


def _cell(row: Row) -> Cell:
    return (row["experiment"], row["dataset"], row["model"], row.get("train_method"),
            row["train_norm"], float(row["train_eps"]))


def chosen_runs(rows: Sequence[Row], runs: Iterable[RunFacts]) -> dict[Cell, list[str]]:
    """Cell -> the run ids of its newest spec (rule 3), oldest first."""
    facts = {run.id: run for run in runs}
    groups: dict[Cell, dict[str, list[RunFacts]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        run = facts[row["run_id"]]
        members = groups[_cell(row)][spec_key(run)]
        if run not in members:
            members.append(run)
    chosen = {}
    for cell, by_spec in groups.items():
        newest = max(by_spec.values(),
                     key=lambda group: max((r.created_at.timestamp(), r.id) for r in group))
        chosen[cell] = [r.id for r in sorted(newest, key=lambda r: (r.created_at, r.id))]
    return chosen


def figure1_rows(rows: Iterable[Row], runs: Iterable[RunFacts]) -> list[Row]:
    """The evaluation rows Figure 1 reads (rule 1) of the given runs."""
    ids = {run.id for run in runs}
    return [r for r in rows if r["run_id"] in ids and r["kind"] == "train"
            and r["split"] == "test" and not r["variant"]
            and r["dataset"] not in NON_FIGURE1_DATASETS]


def method_label(method: str | None, run: RunFacts) -> str | None:
    """The training method as Figure 1 names its curve: TRADES with its β (rule 6)."""
    if method != "trades":
        return method
    beta = (run.resolved_spec.get("adversary") or {}).get("beta")
    return method if beta is None else f"{TRADES_LABEL}{float(beta):g}"


TRADES_LABEL = "trades β="


def trades_beta(method: str | None) -> float | None:
    """β of a curve that ``method_label`` named ``trades β=B``, else ``None``."""
    if method is None or not method.startswith(TRADES_LABEL):
        return None
    return float(method.removeprefix(TRADES_LABEL))


def lone_trades(key: CurveKey, standard: Sequence[Figure1Point]) -> bool:
    """A TRADES-β curve without a standard model (a β sweep of its own experiment): its
    points belong to the β frontier (``trades_frontiers``), not to a curve over ε_train."""
    return trades_beta(key[3]) is not None and not any(p.train_eps == 0 for p in standard)


FrontierKey = tuple[str, str, str, str, float]
"""(dataset, norm, experiment, model, train_eps): one TRADES frontier, traced by β."""


def trades_frontiers(
    curves: dict[CurveKey, list[Figure1Point]],
) -> dict[FrontierKey, list[tuple[float, Figure1Point]]]:
    """Standard accuracy of TRADES models by β, per training ε: how β moves along the trade-off.

    ``curves`` are ``standard_curves``; the borrowed standard model (ε_train 0) is no TRADES
    point and is left out.
    """
    frontiers: dict[FrontierKey, list[tuple[float, Figure1Point]]] = defaultdict(list)
    for (dataset, norm, experiment, method, model), points in curves.items():
        beta = trades_beta(method)
        if beta is None:
            continue
        for point in points:
            if point.train_eps > 0:
                frontiers[(dataset, norm, experiment, model, point.train_eps)].append(
                    (beta, point))
    return {key: sorted(found, key=lambda pair: pair[0]) for key, found in
            sorted(frontiers.items())}


def figure1_points(rows: Iterable[Row], runs: Iterable[RunFacts]) -> list[Figure1Point]:
    """Every Figure 1 point (every attack included), in the paper's order."""
    runs = list(runs)
    facts = {run.id: run for run in runs}
    mine = [{**row, "train_method": method_label(row.get("train_method"), facts[row["run_id"]])}
            for row in figure1_rows(rows, runs)]
    chosen = chosen_runs(mine, runs)
    by_cell: dict[Cell, list[Row]] = defaultdict(list)
    for row in mine:
        by_cell[_cell(row)].append(row)
    points: list[Figure1Point] = []
    for curve, cells in _curves(chosen).items():
        dataset, norm, experiment, method, model = curve
        for eps, cell in sorted(cells.items()):
            ids = set(chosen[cell])
            points += _aggregate(curve, eps, [r for r in by_cell[cell] if r["run_id"] in ids])
    return sorted(points, key=_order)


def _curves(chosen: dict[Cell, list[str]]) -> dict[CurveKey, dict[float, Cell]]:
    """Curve -> ε_train -> cell, with standard models shared (rule 7)."""
    curves: dict[CurveKey, dict[float, Cell]] = defaultdict(dict)
    standard: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
    for cell in chosen:
        experiment, dataset, model, method, norm, eps = cell
        if norm is not None:
            curves[(dataset, norm, experiment, method, model)][eps] = cell
        if eps == 0:
            standard[(experiment, dataset, model)].append(cell)
    for (experiment, dataset, model), cells in standard.items():
        named = [key for key in curves
                 if (key[2], key[0], key[4]) == (experiment, dataset, model)]
        if not named:  # only standard models without a norm: a curve of their own
            for cell in cells:
                curves[(dataset, STANDARD_NORM, experiment, cell[3], model)][0.0] = cell
            continue
        for key in named:
            if 0.0 not in curves[key]:
                curves[key][0.0] = min(cells, key=lambda cell: _borrow_rank(cell, key))
    return curves


def _borrow_rank(cell: Cell, curve: CurveKey) -> tuple[bool, bool, int, str]:
    """Which standard model a curve borrows: its own method, then no norm, then l_inf."""
    return cell[3] != curve[3], cell[4] is not None, norm_rank(cell[4]), str(cell[4])


def _aggregate(curve: CurveKey, eps: float, rows: Sequence[Row]) -> list[Figure1Point]:
    dataset, norm, experiment, method, model = curve
    worst: dict[tuple[str, str | None, float], dict[str, Row]] = defaultdict(dict)
    for row in rows:
        key = ("none", None, 0.0) if is_clean(row) else (
            row["attack"], row["eval_norm"], float(row["eval_eps"]))
        runs = worst[key]
        found = runs.get(row["run_id"])
        if found is None or row["accuracy"] < found["accuracy"]:
            runs[row["run_id"]] = row
    points = []
    for (attack, eval_norm, eval_eps), per_run in worst.items():
        ids = tuple(sorted(per_run))
        mean, std = mean_std([float(per_run[i]["accuracy"]) for i in ids])
        points.append(Figure1Point(dataset, norm, experiment, method, model, eps, attack,
                                   eval_norm, eval_eps, mean, std, len(ids),
                                   sum(int(per_run[i]["n"]) for i in ids), ids,
                                   row_outcome(per_run[ids[0]]) if len(ids) == 1 else None))
    return points


def dataset_rank(dataset: str) -> int:
    return DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER)


def _order(point: Figure1Point) -> tuple[Any, ...]:
    return (dataset_rank(point.dataset), point.dataset, norm_rank(point.train_norm),
            point.train_norm, point.experiment, point.train_method or "", point.model,
            point.train_eps, not point.standard, point.attack, norm_rank(point.eval_norm),
            point.eval_eps)


def standard_curves(points: Iterable[Figure1Point]) -> dict[CurveKey, list[Figure1Point]]:
    """Curve -> its standard-accuracy points by ε_train (what Figure 1 plots)."""
    curves: dict[CurveKey, list[Figure1Point]] = defaultdict(list)
    for point in points:
        if point.standard:
            curves[point.curve].append(point)
    return {key: sorted(found, key=lambda p: p.train_eps) for key, found in curves.items()}


def figure1_frame(points: Iterable[Figure1Point]) -> pd.DataFrame:
    """The points as a DataFrame (one row per point; ``run_ids`` joined by spaces)."""
    columns = [name for name in Figure1Point.__dataclass_fields__ if name != "outcome"]
    records = [{key: value for key, value in asdict(p).items() if key != "outcome"}
               | {"run_ids": " ".join(p.run_ids)} for p in points]
    return pd.DataFrame(records, columns=columns)
