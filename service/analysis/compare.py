"""Runs side by side: what differs in their specs, their results, their metrics and curves.

One computation for every view of a comparison: ``robustlab compare`` prints it and the
dashboard's Compare page draws it. Pure: plain dicts in (a run's resolved spec, its result rows
as ``contract.columns.COLUMNS``, its metrics as ``{name, step, value, tags}``), dataclasses out.
No SQL, no pandas, no plotting: the store's query layer fetches the rows, the views render.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MISSING = "∅"
"""Shown where one run's spec has no value at a path that another's has."""

RESULT_IDENTITY = ("model", "dataset", "split", "train_norm", "train_eps", "eval_norm",
                   "eval_eps", "attack", "steps", "step_size", "restarts", "variant")
"""The columns that say *which* accuracy a result row is (the store's evaluation key)."""

TRAINING_COLUMNS = ("train_norm", "train_eps")
"""Usually what differs between compared runs: dropped from the row identity when each run has
a single training setting, so a standard and a robust run line up on the same attacks."""


@dataclass(frozen=True)
class RunSide:
    """What a comparison needs about one run; build it from the store's rows."""

    run_id: str
    resolved_spec: Mapping[str, Any]
    results: Sequence[Mapping[str, Any]] = ()
    metrics: Sequence[Mapping[str, Any]] = ()
    experiment: str = ""
    status: str = ""


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
        if any(_canonical(v) != _canonical(values[0]) for v in values[1:]):
            differences.append(SpecDifference(path, values))
    return differences


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --------------------------------------------------------------------------- results


def result_columns(runs: Sequence[RunSide]) -> tuple[str, ...]:
    """The identity columns that line results up: ``RESULT_IDENTITY`` less the training columns
    when no run has two rows that differ only in them, less columns empty in every row."""
    rows = [row for run in runs for row in run.results]
    columns = list(RESULT_IDENTITY)
    reduced = [c for c in columns if c not in TRAINING_COLUMNS]
    if all(_unique(run.results, reduced) for run in runs):
        columns = reduced
    return tuple(c for c in columns if any(row.get(c) not in (None, "") for row in rows))


def _unique(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> bool:
    keys = [tuple(_canonical(row.get(c)) for c in columns) for row in rows]
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
            key = _canonical(identity)
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
    return value if isinstance(value, str) else _canonical(value)


def curves(run_id: str, metrics: Iterable[Mapping[str, Any]]) -> list[Curve]:
    """A run's metrics grouped into series by (name, tags), each sorted by step."""
    series: dict[tuple[str, str], tuple[str, dict[str, Any], dict[int, float]]] = {}
    for metric in metrics:
        tags = dict(metric.get("tags") or {})
        key = (str(metric["name"]), _canonical(tags))
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


# --------------------------------------------------------------------------- all together


def compare(runs: Sequence[RunSide]) -> Comparison:
    """The spec diff, the results and the metrics of ``runs`` side by side, and their curves."""
    columns, results = results_side_by_side(runs)
    metrics, multi = metrics_side_by_side(runs)
    return Comparison(
        run_ids=tuple(run.run_id for run in runs),
        spec_diff=spec_diff([run.resolved_spec for run in runs]),
        results=results, result_columns=columns, metrics=metrics, curves=multi,
    )
