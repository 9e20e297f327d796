"""What the science hands to the plumbing: plain records and the ``Reporter`` it writes them to.

Experiments never import SQLAlchemy, Celery or Streamlit. They receive a ``RunContext`` and
call its ``reporter`` (the store in ``robustlab run`` and in a worker, a list in tests). Every
record has a ``key`` that is stable across a resumed run, so the store can upsert and a
re-delivered task leaves no duplicate rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the plumbing imports these records without torch
    import torch


def _key(*parts: Any) -> str:
    return "|".join("" if p is None else (f"{p:.10g}" if isinstance(p, float) else str(p)) for p in parts)


@dataclass(frozen=True)
class EvaluationRecord:
    """One accuracy: model x split x threat model x eps x attack configuration.

    ``attack`` is ``"none"`` for clean accuracy (``eval_eps`` 0), or e.g. ``"pgd"``, ``"fgsm"``,
    ``"exact_linear"``, ``"worst_case"`` (per-example worst case across attacks and restarts).
    ``per_example`` holds the correctness bits packed with ``numpy.packbits`` so results can be
    recombined later; ``checks`` the validity checks (name -> {"passed": bool, ...}).
    """

    model: str
    dataset: str
    accuracy: float
    n: int
    split: str = "test"
    train_norm: str | None = None
    train_eps: float = 0.0
    eval_norm: str | None = None
    eval_eps: float = 0.0
    attack: str = "none"
    steps: int | None = None
    step_size: float | None = None
    restarts: int | None = None
    per_example: bytes | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    """Distinguishes otherwise identical rows (e.g. 'transfer:svm->logistic', 'topk=50')."""
    train_method: str | None = None
    """The training adversary's method (``adversary.method``: pgd, trades, fgsm_rs) of a trained
    model; None where the model is not trained by ``workers.science.training`` (theory, E3).
    Not part of ``key``: one run trains with one method, and keys must stay stable."""

    @property
    def key(self) -> str:
        return _key(
            self.model, self.dataset, self.split, self.train_norm, self.train_eps,
            self.eval_norm, self.eval_eps, self.attack, self.steps, self.step_size,
            self.restarts, self.variant,
        )


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


@dataclass
class RunContext:
    """Everything an experiment needs from outside: where to write, which device, whom to tell."""

    run_id: str
    run_dir: Path
    """Scratch and checkpoint directory of this run; it survives a crash, so runs can resume."""
    device: torch.device
    reporter: Reporter
    data_dir: Path
    """Default root of datasets (``ROBUSTLAB_DATA_DIR``)."""
    resolve_run_checkpoint: Callable[[str], Path] | None = None
    """Maps a run id to its final checkpoint file (provided by the store)."""
    find_runs: Callable[[str], list[dict[str, Any]]] | None = None
    """Maps an experiment name to its runs (id, status, spec) — for specs that reuse models."""


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
