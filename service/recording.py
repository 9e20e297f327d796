"""The runner's recording half: plan and record a spec's runs, and write a run's records.

Torch-free (a test checks ``sys.modules``): ``robustlab submit`` records runs without loading
the science, and the ``StoreReporter`` that a run writes through needs only the record types
of the contract. ``service.runner`` is the executing half: it imports torch and the
experiments.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract.ids import new_id
from contract.records import ArtifactRecord, CheckpointRecord, EvaluationRecord, MetricRecord
from contract.specs.hashing import spec_hash
from contract.specs.loading import LoadedSpec
from contract.specs.sweep import expand
from contract.status import PENDING, RunStatus
from service.outage import Outage
from service.store.entities import NewRun, RunInfo
from service.store.repository import DatabaseUnavailable, Store

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float, str], None]
"""Called with (run_id, fraction done in [0, 1], stage)."""


STALE_AFTER_S = 120.0
"""A 'running' run with no heartbeat for this long has lost its process (``Heartbeat`` writes
one every ``HEARTBEAT_S`` while it lives, progress or not), so it may be resumed."""
HEARTBEAT_S = 30.0
"""How often a running run's process says it is alive: well inside ``STALE_AFTER_S``."""


@dataclass(frozen=True)
class Recorded:
    """What ``record`` did with each cell of a spec."""

    spec_id: str
    runs: list[RunInfo]
    """Recorded now, queued."""
    done: list[RunInfo]
    """An identical cell had already succeeded: not recorded again (unless ``force``)."""
    pending: list[RunInfo]
    """An identical cell is queued, running or interrupted: not recorded (``force`` records a
    new run beside an interrupted one)."""


def new_run_id() -> str:
    """12 hex digits that paste into YAML as a string (``contract.ids``)."""
    return new_id()


def plan_runs(loaded: LoadedSpec, *, queue: str | None = None) -> tuple[str, list[NewRun]]:
    """The spec id and one new run per sweep cell, not yet written anywhere."""
    spec = loaded.spec
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
    to a queued or running run are reported as pending and never recorded twice, and so are
    cells identical to an interrupted run unless ``force`` (see ``triage``).
    """
    spec = loaded.spec
    spec_id, planned = plan_runs(loaded, queue=queue)
    new, done, pending = triage(planned, store.list_runs(experiment=spec.name), force=force)
    runs: list[RunInfo] = []
    # always: a spec recorded before its overrides were kept gains them (provenance)
    store.add_spec(spec_id, spec.name, spec.kind, loaded.source_path, loaded.source_yaml,
                   spec.model_dump(mode="json"), overrides=loaded.overrides)
    if new:
        recorded = store.add_runs(spec_id, new)
        # A racing caller recorded some of these cells first: those come back as its runs.
        planned_ids = {cell.id for cell in new}
        runs = [run for run in recorded if run.id in planned_ids]
        pending += [run for run in recorded if run.id not in planned_ids]
    return Recorded(spec_id, runs, done, pending)


def triage(planned: Sequence[NewRun], existing: Sequence[RunInfo], *,
           force: bool) -> tuple[list[NewRun], list[RunInfo], list[RunInfo]]:
    """Split planned cells into (to record, already done, already pending) by content hash.

    ``existing`` are runs of the same experiment (a hash covers the name, so identical cells
    always share it). Failed and cancelled runs do not count: their cells run again. An
    interrupted run counts as pending (``robustlab resume`` continues it from its checkpoints,
    a new run would start from nothing) unless ``force``, which records a new run.
    """
    by_hash: dict[str, list[RunInfo]] = {}
    for run in existing:
        by_hash.setdefault(run.spec_hash, []).append(run)
    new: list[NewRun] = []
    done: list[RunInfo] = []
    pending: list[RunInfo] = []
    for cell in planned:
        runs = by_hash.get(cell.spec_hash, [])
        succeeded = [run for run in runs if run.status == RunStatus.SUCCEEDED]
        in_flight = [run for run in runs if run.status in PENDING]
        interrupted = [run for run in runs if run.status == RunStatus.INTERRUPTED]
        if in_flight:
            pending.append(in_flight[0])
        elif interrupted and not force:
            pending.append(interrupted[0])
        elif succeeded and not force:
            done.append(succeeded[0])
        else:
            new.append(cell)
    return new, done, pending


class StoreReporter:
    """The ``Reporter`` that writes a run's records to the store, in batches.

    Evaluations and metrics are held until the science reaches a natural boundary, then
    written in one transaction (``Store.write_records``): a checkpoint (an epoch's metrics go
    in with it), a change of stage (an evaluation's rows, the end of an epoch), a progress tick
    ``interval_s`` after the last write (so the dashboard stays live), an artifact, and the end
    of the run (``flush``, which ``execute_run`` calls whatever the outcome). Records keep their
    keys, so the store still upserts and a resumed run leaves no duplicate rows; records held
    when a process dies come after its last checkpoint, so resuming computes them again.
    Cancel checks are throttled to ``interval_s`` too.

    While the database does not answer, everything (checkpoint rows, artifacts, provenance
    and progress too) is held and the science goes on; the database is asked again every few
    seconds (``service.outage``), and the first write that succeeds writes it all. Once the
    outage lasts longer than ``outage_s`` the next call raises ``DatabaseOutage``: the run
    stops, and ``execute_run`` marks it failed when the database answers.
    """

    def __init__(self, store: Store, run_id: str, *, on_progress: ProgressFn | None = None,
                 interval_s: float = 1.0, max_held: int = 2000,
                 outage_s: float = 60.0) -> None:
        self.store = store
        self.run_id = run_id
        self.on_progress = on_progress
        self.interval_s = interval_s
        self.max_held = max_held
        self.outage = Outage(outage_s)
        self._probe = store.probing()
        self._last_write = 0.0
        self._last_stage: str | None = None
        self._last_cancel_check = 0.0
        self._stop = False
        self._evaluations: dict[str, EvaluationRecord] = {}
        self._metrics: dict[str, MetricRecord] = {}
        self._checkpoints: list[CheckpointRecord] = []
        self._artifacts: dict[str, ArtifactRecord] = {}
        self._facts: dict[str, Any] = {}
        self._progress: tuple[float, str | None] | None = None

    def progress(self, done: float, total: float, stage: str = "") -> None:
        fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
        if self.on_progress:
            self.on_progress(self.run_id, fraction, stage)
        now = time.monotonic()
        if stage != self._last_stage or now - self._last_write >= self.interval_s:
            self.flush(progress=(fraction, stage or None))
            self._last_stage = stage

    def should_stop(self) -> bool:
        self.outage.check()
        now = time.monotonic()
        if self.outage.ongoing:
            if self.outage.due():  # a science busy without writing still notices it is back
                self._write()
            self.outage.check()
        elif not self._stop and now - self._last_cancel_check >= self.interval_s:
            self._last_cancel_check = now
            try:
                self._stop = self.store.cancel_requested(self.run_id)
            except DatabaseUnavailable as exc:
                self.outage.failed(now, exc)
        return self._stop

    def evaluation(self, record: EvaluationRecord) -> None:
        self._evaluations[record.key] = record
        self._flush_if_full()

    def metric(self, record: MetricRecord) -> None:
        self._metrics[record.key] = record
        self._flush_if_full()

    def artifact(self, record: ArtifactRecord) -> None:
        self._artifacts[record.name] = record  # written after the rows (``_write``)
        self.flush()

    def checkpoint(self, record: CheckpointRecord) -> None:
        self.flush(checkpoints=[record])

    def provenance(self, **facts: Any) -> None:
        self._facts.update(facts)
        self.flush()

    @property
    def held(self) -> int:
        """Records received and not yet written."""
        return len(self._evaluations) + len(self._metrics)

    def flush(self, *, checkpoints: Sequence[CheckpointRecord] = (),
              progress: tuple[float, str | None] | None = None) -> None:
        """Write every held record (and ``checkpoints``, ``progress``) in one transaction.

        While the database is unreachable this holds them instead (``drain`` waits for it),
        and raises ``DatabaseOutage`` once the outage lasted longer than ``outage_s``.
        """
        self._checkpoints.extend(checkpoints)
        if progress is not None:
            self._progress = progress
        if self.outage.due():
            self._write()
        self.outage.check()

    def drain(self, *, limit: bool = True) -> None:
        """Write everything held, waiting for an unreachable database: within ``outage_s``
        (else ``DatabaseOutage``), or, with ``limit=False``, as long as it takes."""
        while not self._write():
            if limit:
                self.outage.check()
            time.sleep(self.outage.probe_every_s)

    def _holding(self) -> bool:
        return bool(self.held or self._checkpoints or self._artifacts or self._facts
                    or self._progress is not None)

    def _write(self) -> bool:
        """Try to write everything held: rows first (one transaction), then artifacts, so an
        artifact never appears before the numbers it shows. False if the database is down."""
        store = self._probe if self.outage.ongoing else self.store
        started = time.monotonic()
        try:
            if self.outage.ongoing and not self._holding():  # a round trip all the same
                self._stop = store.cancel_requested(self.run_id) or self._stop
            store.write_records(self.run_id, evaluations=list(self._evaluations.values()),
                                metrics=list(self._metrics.values()),
                                checkpoints=self._checkpoints, progress=self._progress)
            self._evaluations.clear()
            self._metrics.clear()
            self._checkpoints = []
            self._progress = None
            while self._artifacts:
                name, record = next(iter(self._artifacts.items()))
                store.add_artifact(self.run_id, record)
                del self._artifacts[name]
            if self._facts:
                store.add_provenance(self.run_id, **self._facts)
                self._facts.clear()
        except DatabaseUnavailable as exc:
            self.outage.failed(started, exc)
            return False
        self.outage.answered()
        self._last_write = time.monotonic()
        return True

    def _flush_if_full(self) -> None:
        if self.held >= self.max_held:
            self.flush()


class Heartbeat:
    """While the block runs, a daemon thread writes the run's heartbeat every ``interval_s``.

    Progress alone cannot keep a run alive in the listings: one batch of AutoAttack on a CPU
    writes none for many minutes, the run then looked stale, and ``robustlab resume`` would
    have let a second process take it over. The heartbeat says the process lives; progress says
    how far it got. A failed write is logged and tried again at the next beat (the run's own
    writes report a lasting outage).
    """

    def __init__(self, store: Store, run_id: str, *, interval_s: float = HEARTBEAT_S) -> None:
        self.store = store
        self.run_id = run_id
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.heartbeat(self.run_id)
            except Exception as exc:  # noqa: BLE001  a beat lost is not the run lost
                log.warning("run %s: could not write a heartbeat (%s)", self.run_id, exc)


def seconds_since_heartbeat(run: RunInfo) -> float | None:
    """How long ago the run last wrote a heartbeat (or progress); ``None`` if it never did."""
    beat = run.heartbeat_at or run.started_at
    if beat is None:
        return None
    if beat.tzinfo is None:  # SQLite hands back naive UTC datetimes
        beat = beat.replace(tzinfo=UTC)
    return (datetime.now(UTC) - beat).total_seconds()


def is_stale(run: RunInfo) -> bool:
    """A run marked 'running' whose process stopped writing heartbeats ``STALE_AFTER_S`` ago.

    A process killed by SIGKILL, the OOM killer or a power cut cannot mark its run; the row
    says 'running' forever. Listings show such a run as stale instead (``shown_status``).
    """
    if run.status != RunStatus.RUNNING:
        return False
    age = seconds_since_heartbeat(run)
    return age is not None and age >= STALE_AFTER_S


def shown_status(run: RunInfo) -> str:
    """The status as listings show it: 'stale (no heartbeat for N s)' for a lost running run."""
    if is_stale(run):
        return f"stale (no heartbeat for {seconds_since_heartbeat(run) or 0:.0f} s)"
    return str(run.status)


def shown_duration_s(run: RunInfo) -> float | None:
    """``duration_s``, except that a stale run's ends at its last heartbeat (it stopped there)."""
    if is_stale(run) and run.started_at is not None and run.heartbeat_at is not None:
        return (run.heartbeat_at - run.started_at).total_seconds()
    return run.duration_s


def resumable(run: RunInfo, *, force: bool = False) -> str | None:
    """Why ``run`` cannot be resumed in this process now, or ``None`` if it can.

    Failed runs and runs queued without a broker can be. A run queued on a broker's queue is
    a worker's to take, and a running one can be resumed only once its process is gone (no
    heartbeat for ``STALE_AFTER_S``), unless ``force``: two processes on one run would fight
    over its checkpoints.
    """
    if run.status == RunStatus.SUCCEEDED:
        return "already succeeded"
    if run.status == RunStatus.CANCELLED:
        return "cancelled (run the spec again to start it afresh)"
    if run.status == RunStatus.QUEUED and run.queue is not None and not force:
        return (f"queued on {run.queue!r}: a `robustlab worker` will take it (`robustlab "
                "cancel` it first, or --force if its message is lost)")
    if run.status == RunStatus.RUNNING and not force:
        age = seconds_since_heartbeat(run)
        if age is not None and age < STALE_AFTER_S:
            return (f"still running on {run.host or 'an unknown host'} (progress written "
                    f"{age:.0f} s ago); --force if its process is gone")
    return None


def first_line(error: str | None) -> str:
    return (error or "").strip().splitlines()[0] if error and error.strip() else ""
