"""Record the runs of a spec and execute one run: the seam between the store and the science.

This is the executing half (torch, the experiments). The recording half, torch-free, is
``service.recording`` (planning, recording and triaging runs, the batching ``StoreReporter``,
``resumable``).

``robustlab run`` calls ``execute_run`` in-process; the Celery task calls the very same function
in a worker. Execution is idempotent: a succeeded run is not run again, and an interrupted one
resumes from the checkpoints in its run directory (the science decides how).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter

from contract.records import Cancelled, NullReporter, Reporter
from contract.specs.kinds import AnySpec
from contract.specs.loading import LoadedSpec
from contract.status import RunStatus
from service.outage import DatabaseOutage, until_answered
from service.preflight import preflight
from service.recording import (
    Heartbeat,
    ProgressFn,
    Recorded,
    StoreReporter,
    record,
)
from service.settings import Settings, get_settings
from service.store.entities import RunInfo
from service.store.repository import Store
from workers.science.context import RunContext
from workers.science.distributed import SINGLE, World
from workers.science.experiments import get_experiment
from workers.science.loader_errors import failure_line
from workers.science.reads import cancellable_reads
from workers.science.training import seed_everything

log = logging.getLogger(__name__)

_SPEC_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnySpec)
_PACKAGES = ("robustlab", "torch", "torchvision", "numpy", "scipy", "pydantic", "sqlalchemy",
             "celery")


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


def machine(device: torch.device) -> str:
    """The hardware a run ran on, in words (provenance: timings mean nothing without it)."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)"]
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        parts.append(f"{pages * size / 2**30:.0f} GiB")
    except (ValueError, OSError, AttributeError):
        pass
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    return "; ".join(parts)


def _context(store: Store, run: RunInfo, device: torch.device, reporter: Reporter,
             settings: Settings, world: World) -> RunContext:
    def resolve_run_checkpoint(run_id: str) -> Path:
        source = store.get_run(run_id)
        checkpoint = store.selected_checkpoint(source.id)  # best.pt when select chose it
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
        world=world,
    )


def rank_device(device: torch.device, world: World) -> torch.device:
    """A rank's own CUDA device (its local rank) in a distributed run; ``device`` otherwise."""
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def execute_run(run_id: str, store: Store, *, device: str | None = None,
                on_progress: ProgressFn | None = None, task_id: str | None = None,
                settings: Settings | None = None, world: World = SINGLE) -> RunInfo:
    """Run one recorded run to an end state (succeeded, failed or cancelled) and return it.

    A succeeded or cancelled run is returned as it is. A run that was interrupted (its status
    still 'running' after a crash) is executed again and resumes from its checkpoints.
    Errors inside the experiment fail the run with the reason; they are not raised.
    In a distributed run this is rank 0's part (the other ranks ``follow_run``).
    """
    settings = settings or get_settings()
    run = store.get_run(run_id)
    if run.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
        return run
    if run.cancel_requested:
        return store.finish_run(run.id, RunStatus.CANCELLED)
    spec = _SPEC_ADAPTER.validate_python(run.resolved_spec)
    missing = preflight(spec, store, device=device)
    if missing:  # what this machine lacks: one line, the run never starts
        return store.finish_run(run.id, RunStatus.FAILED,
                                error="; ".join(str(finding) for finding in missing))
    try:
        torch_device = rank_device(resolve_device(device or spec.device), world)
    except RuntimeError as exc:
        return store.finish_run(run.id, RunStatus.FAILED, error=str(exc))
    run = store.mark_running(
        run.id, host=socket.gethostname(), device=str(torch_device), git_sha=git_sha(),
        package_versions=package_versions(), task_id=task_id,
    )
    reporter = StoreReporter(store, run.id, on_progress=on_progress,
                             outage_s=settings.db_outage_s)
    log.info("run %s (%s, cell %d) starting on %s", run.id, run.experiment, run.cell, torch_device)
    try:  # from here on every way out ends the run: an unwritable runs_dir fails it, too
        ctx = _context(store, run, torch_device, reporter, settings, world)
        reporter.provenance(machine=machine(torch_device),
                            world_size=world.size, nnodes=world.nnodes, backend=world.backend,
                            sync_batchnorm=world.sync_batchnorm if world.distributed else None)
        seed_everything(spec.seed)
        # a read stuck on a FIFO or a hung mount still ends at a cancel (workers.science.reads)
        with Heartbeat(store, run.id), cancellable_reads(reporter.should_stop):
            get_experiment(spec.kind)(spec, ctx)
    except Cancelled:
        if reporter.outage.exceeded():  # the science turned the outage into a Cancelled
            return _end_run(store, reporter, RunStatus.FAILED, reporter.outage.reason())
        # what was computed before the cancel is kept
        return _end_run(store, reporter, RunStatus.CANCELLED, "cancelled on request")
    except Exception as exc:  # the run fails with its reason; the caller decides what to show
        if _STOPS_RECEIVED:  # the stop signal surfaced as another error (an import it broke)
            _mark_interrupted(store, reporter, run.id, _STOPS_RECEIVED[-1])
            raise _STOPS_RECEIVED[-1] from exc
        if isinstance(exc, DatabaseOutage) or reporter.outage.exceeded():
            return _end_run(store, reporter, RunStatus.FAILED, reporter.outage.reason())
        reason = failure_line(exc)  # a DataLoader worker's error: its own line, unwrapped
        log.debug("run %s failed", run.id, exc_info=True)
        # as before batching: the records written before the failure stay
        return _end_run(store, reporter, RunStatus.FAILED,
                        f"{reason}\n\n{traceback.format_exc()}")
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM under ``stop_on_signals``
        _mark_interrupted(store, reporter, run.id, exc)
        raise
    except BaseException:  # a worker's shutdown, SystemExit: keep what was computed
        _flush_quietly(reporter)
        raise
    try:
        reporter.flush(progress=(1.0, "done"))
    except DatabaseOutage as exc:
        return _end_run(store, reporter, RunStatus.FAILED, str(exc))
    if on_progress:
        on_progress(run.id, 1.0, "done")
    return _end_run(store, reporter, RunStatus.SUCCEEDED)


def _mark_interrupted(store: Store, reporter: StoreReporter, run_id: str,
                      exc: KeyboardInterrupt) -> None:
    """Keep what the run computed and mark it interrupted (resumable), by Ctrl-C or a signal."""
    with _signals_deferred():
        _flush_quietly(reporter)
        how = exc.signal_name if isinstance(exc, StopSignal) else "SIGINT"
        if isinstance(exc, StopSignal):
            exc.run_id = run_id
        store.finish_run(run_id, RunStatus.INTERRUPTED,
                         error=f"interrupted by {how}: `robustlab resume {run_id}` "
                         "continues it from its last checkpoint")


def _end_run(store: Store, reporter: StoreReporter, status: RunStatus,
             error: str | None = None) -> RunInfo:
    """Write what the run holds and end it, waiting out an unreachable database.

    Within ``ROBUSTLAB_DB_OUTAGE_S`` the outage is ridden out. Past it the run ends failed
    with the outage as its reason (what it computed is still written), as soon as the database
    answers: never left 'running' by a process that gave up.
    """
    try:
        reporter.drain()
    except DatabaseOutage as exc:
        status, error = RunStatus.FAILED, str(exc)
        reporter.drain(limit=False)
    probe = store.probing()
    return until_answered(lambda: probe.finish_run(reporter.run_id, status, error=error),
                          what=f"run {reporter.run_id} is marked {status.value}")


def follow_run(run_id: str, store: Store, *, world: World, device: str | None = None,
               settings: Settings | None = None) -> None:
    """A rank other than 0 of a distributed run: compute this rank's shards, record nothing.

    The experiment runs exactly as on rank 0 (the collectives need every rank) with a reporter
    that keeps nothing; only rank 0 reads the cancel flag. An error is raised: the rank exits
    non-zero and torchrun ends the others (``service.launch`` marks the run failed).
    """
    settings = settings or get_settings()
    run = store.get_run(run_id)
    spec = _SPEC_ADAPTER.validate_python(run.resolved_spec)
    torch_device = rank_device(resolve_device(device or spec.device), world)
    ctx = _context(store, run, torch_device, NullReporter(), settings, world)
    seed_everything(spec.seed)
    get_experiment(spec.kind)(spec, ctx)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived while ``stop_on_signals`` was active.

    A ``KeyboardInterrupt`` so that science code's ``except Exception`` never swallows it, and
    so that SIGTERM takes the very path Ctrl-C takes: the run is marked interrupted, resumable.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.run_id: str | None = None
        """The run it interrupted (set by ``execute_run``), if one was executing."""
        super().__init__(self.signal_name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_STOPS_RECEIVED: list[StopSignal] = []
"""The stop signals ``stop_on_signals`` turned into ``StopSignal`` in its current block. A
signal that lands inside a C extension's import surfaces as ``ImportError: initialization
failed``, not as the ``StopSignal`` raised: ``execute_run`` reads this to still mark the run
interrupted rather than failed."""


@contextmanager
def stop_on_signals(on_stop: Callable[[StopSignal], None] | None = None) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into ``StopSignal`` while in the block; exit ``128 + signum``.

    For ``robustlab run`` and ``resume``: without it SIGTERM (``kill``, a container stop, a
    batch system's time limit) kills the process outright and leaves its run 'running'
    forever. ``execute_run`` marks the run interrupted; the block ends with ``SystemExit``
    after ``on_stop`` (the CLI says how to resume). Only the main thread can handle signals;
    elsewhere (a Celery worker's pool, a test thread) the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handler(signum: int, _frame: Any) -> None:
        stop = StopSignal(signum)
        _STOPS_RECEIVED.append(stop)
        raise stop

    _STOPS_RECEIVED.clear()
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    try:
        yield
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, StopSignal) else StopSignal(signal.SIGINT)
        if on_stop is not None:
            on_stop(stop)
        raise SystemExit(128 + stop.signum) from None
    finally:
        _STOPS_RECEIVED.clear()
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore further stop signals while an interrupted run is being marked (a second Ctrl-C
    must not leave it 'running'); outside the main thread nothing can be deferred."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _flush_quietly(reporter: StoreReporter) -> None:
    """Write the held records while the process is being stopped; a failure here must not
    hide why it stops (the records come after the last checkpoint: a resume redoes them)."""
    try:
        reporter.flush()
    except Exception:  # noqa: BLE001 - logged, and the interruption goes on
        log.warning("run %s: could not write its last records", reporter.run_id, exc_info=True)


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
