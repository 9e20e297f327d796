"""Record the runs of a spec and execute one run: the seam between the store and the science.

``robustlab run`` calls ``execute_run`` in-process; the Celery task calls the very same function
in a worker. Execution is idempotent: a succeeded run is not run again, and an interrupted one
resumes from the checkpoints in its run directory (the science decides how).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter

from service.settings import Settings, get_settings
from service.specs.hashing import spec_hash
from service.specs.loading import LoadedSpec
from service.specs.models import AnySpec, SpecBase
from service.specs.sweep import expand
from service.store.repository import NewRun, RunInfo, Store
from workers.science.experiments import get_experiment
from workers.science.records import (
    ArtifactRecord,
    Cancelled,
    CheckpointRecord,
    EvaluationRecord,
    MetricRecord,
    RunContext,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float, str], None]
"""Called with (run_id, fraction done in [0, 1], stage)."""

_SPEC_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnySpec)
_PACKAGES = ("robustlab", "torch", "torchvision", "numpy", "scipy", "pydantic", "sqlalchemy",
             "celery")


PENDING_STATUSES = ("queued", "running")
STALE_AFTER_S = 120.0
"""A 'running' run with no progress written for this long has lost its process (it writes at
least every few seconds while it works), so it may be resumed."""


@dataclass(frozen=True)
class Recorded:
    """What ``record`` did with each cell of a spec."""

    spec_id: str
    runs: list[RunInfo]
    """Recorded now, queued."""
    done: list[RunInfo]
    """An identical cell had already succeeded: not recorded again (unless ``force``)."""
    pending: list[RunInfo]
    """An identical cell is queued or running (in a worker, or interrupted): not recorded."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def plan_runs(loaded: LoadedSpec, *, queue: str | None = None) -> tuple[str, list[NewRun]]:
    """The spec id and one new run per sweep cell, not yet written anywhere."""
    spec: SpecBase = loaded.spec
    runs = [
        NewRun(
            id=new_run_id(),
            experiment=spec.name,
            kind=cell.spec.kind,
            cell=cell.index,
            params=cell.params,
            resolved_spec=cell.spec.model_dump(mode="json"),
            spec_hash=spec_hash(cell.spec),
            seed=cell.spec.seed,
            queue=queue,
        )
        for cell in expand(spec)
    ]
    return spec_hash(spec), runs


def record(loaded: LoadedSpec, store: Store, *, queue: str | None = None,
           force: bool = False) -> Recorded:
    """Write the spec and one queued run per grid cell that has no identical run yet.

    Cells identical to a succeeded run are reported as done unless ``force``; cells identical
    to a queued or running run are reported as pending and never recorded twice.
    """
    spec: SpecBase = loaded.spec
    spec_id, planned = plan_runs(loaded, queue=queue)
    new, done, pending = triage(planned, store.list_runs(experiment=spec.name), force=force)
    runs: list[RunInfo] = []
    if new:
        store.add_spec(spec_id, spec.name, spec.kind, loaded.source_path, loaded.source_yaml,
                       spec.model_dump(mode="json"))
        runs = store.add_runs(spec_id, new)
    return Recorded(spec_id, runs, done, pending)


def resolve_device(requested: str) -> torch.device:
    """'auto' means the first CUDA device when there is one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available here")
    return device


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the code that runs, with '-dirty' when the tree has changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("ROBUSTLAB_GIT_SHA")
    return f"{sha}-dirty" if dirty else sha


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["python"] = ".".join(map(str, sys.version_info[:3]))
    versions["cuda"] = torch.version.cuda or "none"
    return versions


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class StoreReporter:
    """The ``Reporter`` that writes records to the store; progress and cancel checks throttled."""

    def __init__(self, store: Store, run_id: str, *, on_progress: ProgressFn | None = None,
                 interval_s: float = 1.0) -> None:
        self.store = store
        self.run_id = run_id
        self.on_progress = on_progress
        self.interval_s = interval_s
        self._last_write = 0.0
        self._last_stage: str | None = None
        self._last_cancel_check = 0.0
        self._stop = False

    def progress(self, done: float, total: float, stage: str = "") -> None:
        fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
        if self.on_progress:
            self.on_progress(self.run_id, fraction, stage)
        now = time.monotonic()
        if stage != self._last_stage or now - self._last_write >= self.interval_s:
            self.store.set_progress(self.run_id, fraction, stage or None)
            self._last_write, self._last_stage = now, stage

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_cancel_check >= self.interval_s:
            self._last_cancel_check = now
            self._stop = self.store.cancel_requested(self.run_id)
        return self._stop

    def evaluation(self, record: EvaluationRecord) -> None:
        self.store.upsert_evaluation(self.run_id, record)

    def metric(self, record: MetricRecord) -> None:
        self.store.upsert_metric(self.run_id, record)

    def artifact(self, record: ArtifactRecord) -> None:
        self.store.add_artifact(self.run_id, record)

    def checkpoint(self, record: CheckpointRecord) -> None:
        self.store.add_checkpoint(self.run_id, record)

    def provenance(self, **facts: Any) -> None:
        self.store.add_provenance(self.run_id, **facts)


def _context(store: Store, run: RunInfo, device: torch.device, reporter: StoreReporter,
             settings: Settings) -> RunContext:
    def resolve_run_checkpoint(run_id: str) -> Path:
        source = store.get_run(run_id)
        checkpoint = store.final_checkpoint(source.id)
        if checkpoint is None:
            raise FileNotFoundError(f"run {source.id} ({source.experiment}) has no checkpoint")
        return Path(checkpoint.path)

    def find_runs(experiment: str) -> list[dict[str, Any]]:
        return [
            {"id": r.id, "status": r.status, "spec": r.resolved_spec, "params": r.params}
            for r in store.list_runs(experiment=experiment)
        ]

    run_dir = settings.runs_dir / run.id
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        run_id=run.id,
        run_dir=run_dir,
        device=device,
        reporter=reporter,
        data_dir=settings.data_dir,
        resolve_run_checkpoint=resolve_run_checkpoint,
        find_runs=find_runs,
    )


def execute_run(run_id: str, store: Store, *, device: str | None = None,
                on_progress: ProgressFn | None = None, task_id: str | None = None,
                settings: Settings | None = None) -> RunInfo:
    """Run one recorded run to an end state (succeeded, failed or cancelled) and return it.

    A succeeded or cancelled run is returned as it is. A run that was interrupted (its status
    still 'running' after a crash) is executed again and resumes from its checkpoints.
    Errors inside the experiment fail the run with the reason; they are not raised.
    """
    settings = settings or get_settings()
    run = store.get_run(run_id)
    if run.status in ("succeeded", "cancelled"):
        return run
    if run.cancel_requested:
        return store.finish_run(run.id, "cancelled")
    spec = _SPEC_ADAPTER.validate_python(run.resolved_spec)
    try:
        torch_device = resolve_device(device or spec.device)
    except RuntimeError as exc:
        return store.finish_run(run.id, "failed", error=str(exc))
    run = store.mark_running(
        run.id, host=socket.gethostname(), device=str(torch_device), git_sha=git_sha(),
        package_versions=package_versions(), task_id=task_id,
    )
    reporter = StoreReporter(store, run.id, on_progress=on_progress)
    ctx = _context(store, run, torch_device, reporter, settings)
    seed_everything(spec.seed)
    log.info("run %s (%s, cell %d) starting on %s", run.id, run.experiment, run.cell, torch_device)
    try:
        get_experiment(spec.kind)(spec, ctx)
    except Cancelled:
        return store.finish_run(run.id, "cancelled", error="cancelled on request")
    except Exception as exc:  # the run fails with its reason; the caller decides what to show
        reason = f"{type(exc).__name__}: {exc}".strip()
        log.debug("run %s failed", run.id, exc_info=True)
        return store.finish_run(run.id, "failed", error=f"{reason}\n\n{traceback.format_exc()}")
    store.set_progress(run.id, 1.0, "done")
    if on_progress:
        on_progress(run.id, 1.0, "done")
    return store.finish_run(run.id, "succeeded")


def triage(planned: Sequence[NewRun], existing: Sequence[RunInfo], *,
           force: bool) -> tuple[list[NewRun], list[RunInfo], list[RunInfo]]:
    """Split planned cells into (to record, already done, already pending) by content hash.

    ``existing`` are runs of the same experiment (a hash covers the name, so identical cells
    always share it). Failed and cancelled runs do not count: their cells run again.
    """
    by_hash: dict[str, list[RunInfo]] = {}
    for run in existing:
        by_hash.setdefault(run.spec_hash, []).append(run)
    new: list[NewRun] = []
    done: list[RunInfo] = []
    pending: list[RunInfo] = []
    for cell in planned:
        runs = by_hash.get(cell.spec_hash, [])
        succeeded = [run for run in runs if run.status == "succeeded"]
        in_flight = [run for run in runs if run.status in PENDING_STATUSES]
        if in_flight:
            pending.append(in_flight[0])
        elif succeeded and not force:
            done.append(succeeded[0])
        else:
            new.append(cell)
    return new, done, pending


def run_spec(loaded: LoadedSpec, store: Store, *, device: str | None = None, force: bool = False,
             on_progress: ProgressFn | None = None,
             on_recorded: Callable[[Sequence[RunInfo]], None] | None = None) -> Recorded:
    """Record the new grid cells of a spec and execute them one after the other, in-process.

    Returns what ``record`` did, with ``runs`` in their end states. Cells identical to a
    succeeded run are not run again unless ``force``; cells identical to a queued or running one
    are left to it (``resume`` continues an interrupted one).
    """
    recorded = record(loaded, store, force=force)
    if on_recorded:
        on_recorded(recorded.runs)
    executed = [execute_run(run.id, store, device=device, on_progress=on_progress)
                for run in recorded.runs]
    return replace(recorded, runs=executed)


def seconds_since_heartbeat(run: RunInfo) -> float | None:
    """How long ago the run last wrote progress; ``None`` if it never did."""
    beat = run.heartbeat_at or run.started_at
    if beat is None:
        return None
    if beat.tzinfo is None:  # SQLite hands back naive UTC datetimes
        beat = beat.replace(tzinfo=UTC)
    return (datetime.now(UTC) - beat).total_seconds()


def resumable(run: RunInfo, *, force: bool = False) -> str | None:
    """Why ``run`` cannot be resumed in this process now, or ``None`` if it can.

    Failed runs and runs queued without a broker can be. A run queued on a broker's queue is
    a worker's to take, and a running one can be resumed only once its process is gone (no
    heartbeat for ``STALE_AFTER_S``), unless ``force``: two processes on one run would fight
    over its checkpoints.
    """
    if run.status == "succeeded":
        return "already succeeded"
    if run.status == "cancelled":
        return "cancelled (run the spec again to start it afresh)"
    if run.status == "queued" and run.queue is not None and not force:
        return (f"queued on {run.queue!r}: a `robustlab worker` will take it (`robustlab "
                "cancel` it first, or --force if its message is lost)")
    if run.status == "running" and not force:
        age = seconds_since_heartbeat(run)
        if age is not None and age < STALE_AFTER_S:
            return (f"still running on {run.host or 'an unknown host'} (progress written "
                    f"{age:.0f} s ago); --force if its process is gone")
    return None


def first_line(error: str | None) -> str:
    return (error or "").strip().splitlines()[0] if error and error.strip() else ""
