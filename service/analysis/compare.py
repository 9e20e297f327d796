"""Runs side by side: what differs in their specs, their results, their metrics and curves.

One computation for every view of a comparison: ``robustlab compare`` prints it and the
dashboard's Compare page draws it. Pure: plain dicts in (a run's resolved spec, its result rows
as ``contract.columns.COLUMNS``, its metrics as ``{name, step, value, tags}``, optionally its
per-example correctness bits), dataclasses out. No SQL, no pandas, no plotting: the store's
query layer fetches the rows, the views render.

Differences carry their uncertainty (``service.analysis.stats``): every evaluation two runs
both have becomes a ``PairedDifference`` (accuracy of a minus b, a 95% interval, a p-value,
Holm-adjusted over the comparison), and within each run every attack is set against the
strongest attack of its ball (``AgainstStrongest``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.analysis.common import canonical
from service.analysis.pairing import Outcome, discordance, is_paired, row_outcome
from service.analysis.stats import Difference, holm, paired_difference, unpaired_difference

MISSING = "∅"
"""Shown where one run's spec has no value at a path that another's has."""

RESULT_IDENTITY = ("model", "dataset", "split", "train_norm", "train_eps", "eval_norm",
                   "eval_eps", "attack", "steps", "step_size", "restarts", "variant",
                   "checkpoint")
"""The columns that say *which* accuracy a result row is (the store's evaluation key)."""

TRAINING_COLUMNS = ("train_norm", "train_eps")
"""Usually what differs between compared runs: dropped from the row identity when each run has
a single training setting, so a standard and a robust run line up on the same attacks."""

PAIR_IDENTITY = ("dataset", "split", "eval_norm", "eval_eps", "attack", "steps", "step_size",
                 "restarts", "variant", "checkpoint")
"""What makes two runs' rows the same evaluation for a paired difference: the row identity
less the model and its training, which are what the compared runs differ in (the model and
training columns join it when a run holds several models)."""

NOT_ATTACKS = ("none", "worst_case")
"""Rows that are no attack of their ball: clean accuracy and the per-example worst case."""


@dataclass(frozen=True)
class RunSide:
    """What a comparison needs about one run; build it from the store's rows."""

    run_id: str
    resolved_spec: Mapping[str, Any]
    results: Sequence[Mapping[str, Any]] = ()
    metrics: Sequence[Mapping[str, Any]] = ()
    experiment: str = ""
    status: str = ""
    per_example: Mapping[str, bytes] = field(default_factory=dict)
    """Per-example correctness bits (``numpy.packbits``, big-endian) by ``evaluation_key`` of
    the row; rows without bits are unpaired."""


@dataclass(frozen=True)
class SpecDifference:
    """One dotted spec path whose value is not the same in every run (``MISSING`` if absent)."""

    path: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SideBySide:
    """One row of a side-by-side table: what it is (``identity``) and one value per run."""

    identity: dict[str, Any]
    values: tuple[float | None, ...]

    @property
    def spread(self) -> float | None:
        """Largest minus smallest value present; ``None`` with fewer than two values."""
        present = [v for v in self.values if v is not None and not math.isnan(v)]
        return max(present) - min(present) if len(present) >= 2 else None


@dataclass(frozen=True)
class Curve:
    """A metric over steps (e.g. ``train_loss`` per epoch) for one run and one set of tags."""

    run_id: str
    name: str
    tags: dict[str, Any]
    steps: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        return metric_label(self.name, self.tags)


@dataclass(frozen=True)
class Comparison:
    """Everything ``compare`` shows, in the order of ``run_ids``."""

    run_ids: tuple[str, ...]
    spec_diff: list[SpecDifference]
    results: list[SideBySide]
    result_columns: tuple[str, ...]
    metrics: list[SideBySide]
    curves: list[Curve] = field(default_factory=list)
    paired: list[PairedDifference] = field(default_factory=list)
    against_strongest: list[AgainstStrongest] = field(default_factory=list)


# --------------------------------------------------------------------------- specs


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as ``{"dotted.path": leaf}``; lists of mappings are indexed (``a.0.b``).

    Lists of scalars stay one leaf (``eps: [0.1, 0.3]``): that is how a user writes and reads
    them. MLflow params and the spec diff both use this, so they name paths the same way.
    """
    if isinstance(value, Mapping):
        if not value and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix: list(value) if isinstance(value, tuple) else value}


def spec_diff(specs: Sequence[Mapping[str, Any]]) -> list[SpecDifference]:
    """The paths whose values differ between the resolved specs, in first-seen order."""
    flat = [flatten(spec) for spec in specs]
    paths: dict[str, None] = {}
    for one in flat:
        paths.update(dict.fromkeys(one))
    differences = []
    for path in paths:
        values = tuple(one.get(path, MISSING) for one in flat)
        if any(canonical(v) != canonical(values[0]) for v in values[1:]):
            differences.append(SpecDifference(path, values))
    return differences


# --------------------------------------------------------------------------- results


def result_columns(runs: Sequence[RunSide]) -> tuple[str, ...]:
    """The identity columns that line results up: ``RESULT_IDENTITY`` less the training columns
    when no run has two rows that differ only in them, less columns empty in every row."""
    rows = [row for run in runs for row in run.results]
    columns = list(RESULT_IDENTITY)
    reduced = [c for c in columns if c not in TRAINING_COLUMNS]
    if all(_unique(run.results, reduced) for run in runs):
        columns = reduced
    return tuple(c for c in columns if any(row.get(c) not in (None, "") for row in rows)
                 and (c != "checkpoint" or any(row.get(c) not in (None, "", "final")
                                               for row in rows)))


def _unique(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> bool:
    keys = [tuple(canonical(row.get(c)) for c in columns) for row in rows]
    return len(keys) == len(set(keys))


def results_side_by_side(runs: Sequence[RunSide]) -> tuple[tuple[str, ...], list[SideBySide]]:
    """Accuracy per run for every evaluation that any run has, in first-seen order.

    Returns the identity columns used and one ``SideBySide`` per evaluation; a run without that
    evaluation has ``None``.
    """
    columns = result_columns(runs)
    table: dict[str, tuple[dict[str, Any], list[float | None]]] = {}
    for index, run in enumerate(runs):
        for row in run.results:
            identity = {c: row.get(c) for c in columns}
            key = canonical(identity)
            if key not in table:
                table[key] = (identity, [None] * len(runs))
            table[key][1][index] = row.get("accuracy")
    return columns, [SideBySide(identity, tuple(values)) for identity, values in table.values()]


# --------------------------------------------------------------------------- metrics


def metric_label(name: str, tags: Mapping[str, Any]) -> str:
    """``name[k=v,k=v]`` (tags sorted), or just ``name``: one string per metric series."""
    if not tags:
        return name
    return f"{name}[{','.join(f'{k}={_tag_text(tags[k])}' for k in sorted(tags))}]"


def _tag_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else canonical(value)


def curves(run_id: str, metrics: Iterable[Mapping[str, Any]]) -> list[Curve]:
    """A run's metrics grouped into series by (name, tags), each sorted by step."""
    series: dict[tuple[str, str], tuple[str, dict[str, Any], dict[int, float]]] = {}
    for metric in metrics:
        tags = dict(metric.get("tags") or {})
        key = (str(metric["name"]), canonical(tags))
        if key not in series:
            series[key] = (str(metric["name"]), tags, {})
        series[key][2][int(metric.get("step") or 0)] = float(metric["value"])
    out = []
    for name, tags, points in series.values():
        steps = tuple(sorted(points))
        out.append(Curve(run_id, name, tags, steps, tuple(points[s] for s in steps)))
    return sorted(out, key=lambda c: (c.name, c.label))


def metrics_side_by_side(runs: Sequence[RunSide]) -> tuple[list[SideBySide], list[Curve]]:
    """Each metric series' last value per run, and every series with more than one step.

    A series is one (name, tags); its side-by-side value is the value at its highest step (the
    end of training for a per-epoch curve, the only value for a scalar).
    """
    table: dict[str, tuple[dict[str, Any], list[float | None]]] = {}
    multi: list[Curve] = []
    for index, run in enumerate(runs):
        for curve in curves(run.run_id, run.metrics):
            identity = {"metric": curve.label}
            key = curve.label
            if key not in table:
                table[key] = (identity, [None] * len(runs))
            table[key][1][index] = curve.values[-1]
            if len(curve.steps) > 1:
                multi.append(curve)
    rows = [SideBySide(identity, tuple(values)) for identity, values in table.values()]
    return sorted(rows, key=lambda r: str(r.identity["metric"])), multi


# --------------------------------------------------------------------------- differences


@dataclass(frozen=True)
class DifferenceTest:
    """Accuracy of a minus accuracy of b on one evaluation, with its uncertainty.

    Paired (both rows have per-example bits and name the same examples; see ``is_paired``):
    ``a_only``/``b_only`` count the examples only a / only b classifies correctly,
    ``difference`` is ``(a_only - b_only) / n``, the interval Newcombe's paired score interval
    and ``p_value`` the exact McNemar test. Unpaired: counts None, Newcombe's hybrid score
    interval and Fisher's exact test on the two accuracies; ``n`` is None when the two differ.
    """

    n: int | None
    a_only: int | None
    b_only: int | None
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    paired: bool


@dataclass(frozen=True)
class PairedDifference:
    """One evaluation that runs ``a`` and ``b`` both have, a minus b."""

    a: str
    b: str
    attack: str
    eval_norm: str | None
    eval_eps: float
    variant: str
    split: str
    test: DifferenceTest
    p_holm: float
    """``p_value`` Holm-adjusted over every difference of the comparison."""
    checkpoint: str = "final"
    """The weights both rows evaluated ('final', or 'best' of ``training.select``)."""


@dataclass(frozen=True)
class AgainstStrongest:
    """One attack of a run against the strongest (lowest-accuracy) attack of the same ball
    (model, training, dataset, split, norm and eps) on the same examples: attack minus
    strongest, so ``a_only`` counts the examples only the strongest attack breaks."""

    run: str
    model: str
    split: str
    eval_norm: str | None
    eval_eps: float
    attack: str
    variant: str
    strongest: str
    strongest_variant: str
    test: DifferenceTest
    p_holm: float
    """``p_value`` Holm-adjusted over every attack-against-strongest of the comparison."""


def evaluation_key(row: Mapping[str, Any]) -> str:
    """A row's identity as one string (``RESULT_IDENTITY``, the store's evaluation key): how
    ``RunSide.per_example`` finds a row's bits."""
    return canonical([row.get(c) for c in RESULT_IDENTITY])


def outcome(side: RunSide, row: Mapping[str, Any]) -> Outcome:
    return row_outcome(row, side.per_example.get(evaluation_key(row)))


def difference_test(a: Outcome, b: Outcome) -> DifferenceTest:
    """Accuracy of a minus b: paired (McNemar) when ``is_paired``, else unpaired (Fisher)."""
    if is_paired(a, b):
        assert a.bits is not None and b.bits is not None
        both, a_only, b_only, neither = discordance(a.bits, b.bits, a.n)
        return _test(a.n, a_only, b_only, paired_difference(both, a_only, b_only, neither))
    k_a, k_b = _correct(a), _correct(b)
    return _test(a.n if a.n == b.n else None, None, None,
                 unpaired_difference(k_a, a.n, k_b, b.n))


def _correct(side: Outcome) -> int:
    return min(max(round(side.accuracy * side.n), 0), side.n)


def _test(n: int | None, a_only: int | None, b_only: int | None,
          found: Difference) -> DifferenceTest:
    return DifferenceTest(n, a_only, b_only, found.difference, found.ci_low, found.ci_high,
                found.p_value, a_only is not None)


def _testable(row: Mapping[str, Any]) -> bool:
    accuracy, n = row.get("accuracy"), row.get("n")
    return (accuracy is not None and not math.isnan(accuracy) and n is not None
            and not math.isnan(n) and n > 0)


def pair_columns(runs: Sequence[RunSide]) -> tuple[str, ...]:
    """``PAIR_IDENTITY``, or the whole row identity when a run holds rows that it cannot tell
    apart (several models or training settings in one run, as the theory runs)."""
    if all(_unique(run.results, PAIR_IDENTITY) for run in runs):
        return PAIR_IDENTITY
    return RESULT_IDENTITY


def paired_differences(runs: Sequence[RunSide]) -> list[PairedDifference]:
    """For every two runs (in the given order, a before b) and every evaluation both have
    (``pair_columns``), a minus b with its interval and p-value, Holm-adjusted over all."""
    columns = pair_columns(runs)
    indexed = [{canonical([row.get(c) for c in columns]): row
                for row in run.results if _testable(row)} for run in runs]
    found: list[tuple[RunSide, RunSide, Mapping[str, Any], DifferenceTest]] = []
    for i, side_a in enumerate(runs):
        for j in range(i + 1, len(runs)):
            side_b = runs[j]
            for key, row in indexed[i].items():
                other = indexed[j].get(key)
                if other is not None:
                    test = difference_test(outcome(side_a, row), outcome(side_b, other))
                    found.append((side_a, side_b, row, test))
    adjusted = holm([test.p_value for *_, test in found]).adjusted
    return [PairedDifference(a.run_id, b.run_id, row["attack"], row.get("eval_norm"),
                             row.get("eval_eps") or 0.0, row.get("variant") or "",
                             row.get("split") or "", test, p_holm,
                             row.get("checkpoint") or "final")
            for (a, b, row, test), p_holm in zip(found, adjusted, strict=True)]


def against_strongest(runs: Sequence[RunSide]) -> list[AgainstStrongest]:
    """Within each run, every attack of a ball against the ball's strongest attack (lowest
    accuracy; the first on ties), on the same examples; Holm-adjusted over all of them."""
    found: list[tuple[RunSide, Mapping[str, Any], Mapping[str, Any], DifferenceTest]] = []
    for side in runs:
        balls: dict[str, list[Mapping[str, Any]]] = {}
        for row in side.results:
            if row.get("attack") not in NOT_ATTACKS and row.get("eval_norm") and _testable(row):
                ball = canonical([row.get(c) for c in ("model", "dataset", "split", "train_norm",
                                                         "train_eps", "eval_norm", "eval_eps",
                                                         "checkpoint")])
                balls.setdefault(ball, []).append(row)
        for members in balls.values():
            strongest = min(members, key=lambda row: row["accuracy"])
            for row in members:
                if row is not strongest:
                    test = difference_test(outcome(side, row), outcome(side, strongest))
                    found.append((side, row, strongest, test))
    adjusted = holm([test.p_value for *_, test in found]).adjusted
    return [AgainstStrongest(side.run_id, row.get("model") or "", row.get("split") or "",
                             row.get("eval_norm"), row.get("eval_eps") or 0.0, row["attack"],
                             row.get("variant") or "", strongest["attack"],
                             strongest.get("variant") or "", test, p_holm)
            for (side, row, strongest, test), p_holm in zip(found, adjusted, strict=True)]


# --------------------------------------------------------------------------- all together


def compare(runs: Sequence[RunSide]) -> Comparison:
    """The spec diff, the results and the metrics of ``runs`` side by side, their curves, and
    the differences between them with their uncertainty."""
    columns, results = results_side_by_side(runs)
    metrics, multi = metrics_side_by_side(runs)
    return Comparison(
        run_ids=tuple(run.run_id for run in runs),
        spec_diff=spec_diff([run.resolved_spec for run in runs]),
        results=results, result_columns=columns, metrics=metrics, curves=multi,
        paired=paired_differences(runs), against_strongest=against_strongest(runs),
    )
