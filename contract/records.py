"""What the science hands to the plumbing: plain records and the ``Reporter`` it writes them to.

Experiments never import SQLAlchemy, Celery or Streamlit. They receive a
``workers.science.context.RunContext`` and call its ``reporter`` (the store in ``robustlab run`` and in a worker, a list in tests). Every
record has a ``key`` that is stable across a resumed run, so the store can upsert and a
re-delivered task leaves no duplicate rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


def _key(*parts: Any) -> str:
    return "|".join("" if p is None else (f"{p:.10g}" if isinstance(p, float) else str(p)) for p in parts)


def result_field(*, type: str, length: int | None = None, table: bool | str = True,
                 doc: str, **options: Any) -> Any:
    """A field of ``EvaluationRecord`` that is also a result column (``contract.columns``).

    Args:
        type: the column's type: "str", "float", "int" or "bool".
        length: the most characters of a "str" column (the store's VARCHAR length).
        table: shown in the terminal table and LaTeX (JSON and CSV hold every column);
            "varied": only when some row holds another value than the default.
        doc: what the column holds (the README and ``--help`` repeat it).
        options: ``default`` and the like, passed to ``dataclasses.field``.
    """
    return field(metadata={"column": {"type": type, "length": length, "table": table,
                                      "doc": doc}}, **options)


@dataclass(frozen=True, kw_only=True)
class EvaluationRecord:
    """One accuracy: model x split x threat model x eps x attack configuration.

    Every ``result_field`` is a result column: the store's ``evaluations`` table, the rows of
    ``robustlab results`` (json, csv, table, latex), ``results_frame``, the report and the
    dashboard all read them from here (``contract.columns``), in this order. Adding a result
    field is one field here (plus the migration that adds its database column).
    ``per_example`` holds the correctness bits packed with ``numpy.packbits`` so results can be
    recombined later; ``checks`` the validity checks (name -> {"passed": bool, ...}).
    """

    model: str = result_field(type="str", length=64, doc="the architecture evaluated")
    checkpoint: str = result_field(
        type="str", length=8, default="final", table="varied",
        doc="the weights evaluated: 'final' (the last epoch's) or 'best' (the epoch that "
        "training.select chose on the validation split)")
    dataset: str = result_field(type="str", length=64, doc="the dataset evaluated on")
    split: str = result_field(type="str", length=16, default="test",
                              doc="the split evaluated: test or train")
    train_norm: str | None = result_field(type="str", length=8, default=None,
                                          doc="the training adversary's norm")
    train_eps: float | None = result_field(
        type="float", default=0.0,
        doc="the training radius; 0 is standard training; null when unknown (a checkpoint "
        "trained elsewhere, unless source.trained_with declares it)")
    train_method: str | None = result_field(
        type="str", length=16, default=None,
        doc="the training adversary's method (adversary.method); null where the model is not "
        "trained by workers.science.training (theory, E3) and on rows older than 0003")
    """Not part of ``key``: one run trains with one method, and keys must stay stable."""
    eval_norm: str | None = result_field(type="str", length=8, default=None,
                                         doc="the attack's norm; null for clean accuracy")
    eval_eps: float = result_field(type="float", default=0.0,
                                   doc="the attack's radius; 0 for clean accuracy")
    attack: str = result_field(
        type="str", length=32, default="none",
        doc="'none' (clean accuracy), an attack kind, or 'worst_case' (per-example worst case "
        "across the attacks of one ball)")
    steps: int | None = result_field(type="int", default=None, doc="attack iterations")
    step_size: float | None = result_field(type="float", default=None, table=False,
                                           doc="attack step size")
    restarts: int | None = result_field(type="int", default=None, table=False,
                                        doc="attack restarts")
    accuracy: float = result_field(type="float", doc="accuracy, a fraction in [0, 1]")
    n: int = result_field(type="int", doc="examples evaluated")
    variant: str = result_field(
        type="str", length=120, default="",
        doc="distinguishes otherwise identical rows ('apgd-t', 'transfer:svm->logistic', "
        "'topk=50')")
    dataset_hash: str | None = result_field(
        type="str", length=64, default=None, table=False,
        doc="content hash of the dataset the examples come from; null on rows older than "
        "0006 (treated as unpaired)")
    examples_hash: str | None = result_field(
        type="str", length=64, default=None, table=False,
        doc="hash of the example indices evaluated, in order: rows with the same "
        "dataset_hash, split and examples_hash scored the same examples (paired)")
    per_example: bytes | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return _key(
            self.model, self.dataset, self.split, self.train_norm, self.train_eps,
            self.eval_norm, self.eval_eps, self.attack, self.steps, self.step_size,
            self.restarts, self.variant,
        ) + ("" if self.checkpoint == "final" else f"|{self.checkpoint}")

    @property
    def checks_passed(self) -> bool | None:
        """Whether every validity check passed; None when none ran."""
        if not self.checks:
            return None
        return all(check.get("passed", True) for check in self.checks.values())


@dataclass(frozen=True)
class MetricRecord:
    """A scalar on a curve: training loss per epoch, a closed form, a bound, a measured score."""

    name: str
    value: float
    step: int = 0
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return _key(self.name, self.step, json.dumps(self.tags, sort_keys=True, default=str))


@dataclass(frozen=True)
class ArtifactRecord:
    """A file the run produced (PNG figure, NPZ array, ...). ``data`` is its bytes."""

    kind: str
    """e.g. 'figure', 'large_eps', 'interpolation', 'gradients', 'weights'."""
    name: str
    """File name, unique within the run, e.g. 'tradeoff.png'."""
    data: bytes
    media_type: str = "image/png"
    metadata: dict[str, Any] = field(default_factory=dict)


PER_EXAMPLE_KIND = "per_example"
"""The artifact kind of a measure's per-image values: a ``.npy`` file (numpy's format, read
with ``allow_pickle=False``) holding one float32 per image, in the images' order (NaN where
the measure is undefined for that image), whose metadata names the ``metric`` and the model
(and attack) like the metric's tags. The report compares two models measured on the same
images of one run paired, image by image, over the images both measured."""

PER_EXAMPLE_MEDIA_TYPE = "application/x-npy"


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint file written under ``RunContext.run_dir``."""

    path: Path
    epoch: int
    arch: str
    dataset: str
    train_norm: str | None
    train_eps: float
    final: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


class Cancelled(Exception):
    """Raised by science loops when ``Reporter.should_stop()`` turned true."""


class Reporter(Protocol):
    """Where experiments send progress and results. Implementations must be idempotent by key."""

    def progress(self, done: float, total: float, stage: str = "") -> None: ...

    def should_stop(self) -> bool: ...

    def evaluation(self, record: EvaluationRecord) -> None: ...

    def metric(self, record: MetricRecord) -> None: ...

    def artifact(self, record: ArtifactRecord) -> None: ...

    def checkpoint(self, record: CheckpointRecord) -> None: ...

    def provenance(self, **facts: Any) -> None:
        """Extra provenance learnt while running, e.g. ``data_hash``."""
        ...


class NullReporter:
    """A ``Reporter`` that keeps nothing: the ranks other than 0 of a distributed run."""

    def progress(self, done: float, total: float, stage: str = "") -> None:
        return None

    def should_stop(self) -> bool:
        return False

    def evaluation(self, record: EvaluationRecord) -> None:
        return None

    def metric(self, record: MetricRecord) -> None:
        return None

    def artifact(self, record: ArtifactRecord) -> None:
        return None

    def checkpoint(self, record: CheckpointRecord) -> None:
        return None

    def provenance(self, **facts: Any) -> None:
        return None


class MemoryReporter:
    """A ``Reporter`` that keeps everything in lists: for tests and notebooks."""

    def __init__(self) -> None:
        self.evaluations: dict[str, EvaluationRecord] = {}
        self.metrics: dict[str, MetricRecord] = {}
        self.artifacts: dict[str, ArtifactRecord] = {}
        self.checkpoints: list[CheckpointRecord] = []
        self.facts: dict[str, Any] = {}
        self.last_progress: tuple[float, float, str] | None = None
        self.stop = False

    def progress(self, done: float, total: float, stage: str = "") -> None:
        self.last_progress = (done, total, stage)

    def should_stop(self) -> bool:
        return self.stop

    def evaluation(self, record: EvaluationRecord) -> None:
        self.evaluations[record.key] = record

    def metric(self, record: MetricRecord) -> None:
        self.metrics[record.key] = record

    def artifact(self, record: ArtifactRecord) -> None:
        self.artifacts[record.name] = record

    def checkpoint(self, record: CheckpointRecord) -> None:
        self.checkpoints.append(record)

    def provenance(self, **facts: Any) -> None:
        self.facts.update(facts)

    def rows(self) -> list[dict[str, Any]]:
        """Evaluations as flat dictionaries (no bytes), handy in tests."""
        out = []
        for record in self.evaluations.values():
            row = asdict(record)
            row.pop("per_example")
            out.append(row)
        return out
