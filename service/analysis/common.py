"""What every paper artefact shares: the shapes of its inputs, recency, repeats.

The analysis layer takes plain data: evaluation rows as dicts (the keys of
``contract.columns.COLUMNS``, from ``Store.results`` or a DataFrame's records), runs as
anything with the attributes of ``RunFacts`` (``service.store.repository.RunInfo`` has them),
metrics as anything with ``MetricFacts``'s. It imports no database, plotting or web code, so
the report (matplotlib) and the dashboard (Altair) draw the very same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

Row = dict[str, Any]
"""One evaluation: run_id, experiment, kind, model, dataset, split, train_norm, train_eps,
eval_norm, eval_eps, attack, steps, accuracy, n, variant (and train_method when recorded)."""

class RunFacts(Protocol):
    """What the analysis needs of a run (``RunInfo`` has it; ``RunRecord`` builds it)."""

    @property
    def id(self) -> str: ...
    @property
    def experiment(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def seed(self) -> int: ...
    @property
    def resolved_spec(self) -> dict[str, Any]: ...
    @property
    def provenance(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RunRecord:
    """A plain ``RunFacts``, for callers that hold runs as table rows (the dashboard)."""

    id: str
    experiment: str
    kind: str
    created_at: datetime
    seed: int = 0
    resolved_spec: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> RunRecord:
        """From a dict with ``id`` (or ``run_id``) and the other fields (missing ones empty)."""
        return cls(id=str(row.get("id", row.get("run_id"))), experiment=str(row["experiment"]),
                   kind=str(row["kind"]), created_at=row["created_at"],
                   seed=int(row.get("seed") or 0),
                   resolved_spec=dict(row.get("resolved_spec") or {}),
                   provenance=dict(row.get("provenance") or {}))


class MetricFacts(Protocol):
    """What the analysis needs of a metric (``MetricInfo`` has it)."""

    @property
    def run_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    """Null where the science reported NaN or an infinity."""
    @property
    def tags(self) -> dict[str, Any]: ...


ATTACK_TITLES = {"pgd": "PGD", "autoattack": "AutoAttack", "fgsm": "FGSM", "apgd": "APGD",
                 "fab": "FAB", "square": "Square", "worst_case": "worst case"}
"""How tables and legends name an attack kind (others keep their kind's name)."""


def attack_name(attack: str) -> str:
    return ATTACK_TITLES.get(attack, attack)


def is_clean(row: Mapping[str, Any]) -> bool:
    """Standard accuracy: no attack at radius 0."""
    return row["attack"] == "none" and not row["eval_eps"]


def norm_rank(norm: str | None) -> int:
    """l_inf before l_2 (the paper's order), then anything else."""
    return ("linf", "l2").index(norm) if norm in ("linf", "l2") else 2


def newest_first(runs: Iterable[RunFacts]) -> list[RunFacts]:
    """Runs from the newest to the oldest (ties by id, so the order is the same everywhere)."""
    return sorted(runs, key=lambda run: (-run.created_at.timestamp(), run.id))


def recency(runs: Iterable[RunFacts]) -> dict[str, int]:
    """Run id -> position among the runs, 0 for the newest."""
    return {run.id: index for index, run in enumerate(newest_first(runs))}


MAX_SOURCE_DEPTH = 8
"""How many ``source.run`` links ``spec_key`` follows (an evaluation of an evaluation's ...)."""


def canonical(value: Any) -> str:
    """``value`` as JSON with sorted keys: equal values, equal text (grouping keys, hashes)."""
    return json.dumps(value, sort_keys=True, default=str)


def spec_key(run: RunFacts, lookup: Callable[[str], RunFacts | None] | None = None) -> str:
    """16 hex digits of the run's resolved spec without its seed: runs with the same key are
    repeats of one cell. With ``lookup`` (run id -> run, None when unknown), a ``source.run``
    counts as the cell of the run it names, so evaluations of three seeds' models are repeats
    too; an unknown run keeps its id."""
    return hashlib.sha256(canonical(_cell_spec(run, lookup, 0)).encode()).hexdigest()[:16]


def _cell_spec(run: RunFacts, lookup: Callable[[str], RunFacts | None] | None,
               depth: int) -> Any:
    spec = {key: value for key, value in run.resolved_spec.items() if key != "seed"}
    source = spec.get("source")
    if (lookup is not None and isinstance(source, Mapping) and source.get("run")
            and depth < MAX_SOURCE_DEPTH):
        trained = lookup(str(source["run"]))
        if trained is not None:
            spec["source"] = {**source, "run": {"cell": _cell_spec(trained, lookup, depth + 1)}}
    return spec


def tag_matches(stored: Any, wanted: Any) -> bool:
    """Tags went through JSON: compare numbers closely (0.3 == "0.3" too), the rest exactly."""
    if isinstance(wanted, int | float) and isinstance(stored, int | float):
        return math.isclose(float(stored), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(wanted, int | float) or isinstance(stored, int | float):
        return str(stored) == str(wanted)
    return bool(stored == wanted)


def named(metrics: Iterable[MetricFacts], name: str) -> list[MetricFacts]:
    return [metric for metric in metrics if metric.name == name]


def metric_value(metrics: Iterable[MetricFacts], **tags: Any) -> float | None:
    """The value of the first metric whose tags have these values (numbers compared closely)."""
    for metric in metrics:
        if all(tag_matches(metric.tags.get(k), v) for k, v in tags.items()):
            return metric.value
    return None


def rows_of(rows: Iterable[Row], run_ids: Iterable[str]) -> list[Row]:
    ids = set(run_ids)
    return [row for row in rows if row["run_id"] in ids]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
