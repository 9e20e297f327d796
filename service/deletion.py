"""Removing runs: their rows, metrics, artifacts, checkpoints and run directory.

``robustlab runs delete`` and ``runs prune`` (and the dashboard's delete button) go through
``delete_runs``. A checkpoint file that another run names (an ``evaluate`` or ``visualize``
run's source, a standing evaluation's provenance) is kept, and the result says so: deleting a
training must not pull the ground from under the evaluations of its model.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contract.status import PENDING, RunStatus
from service.settings import Settings, get_settings
from service.store.entities import RunInfo
from service.store.repository import Store

CANCEL_WAIT_S = 30.0
"""How long ``--force`` waits for a running run to stop after cancelling it."""


class DeletionRefused(Exception):
    """A run that may not be deleted as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Deleted:
    """What deleting one run removed, and what it kept."""

    run_id: str
    files_removed: int
    kept: list[str] = field(default_factory=list)
    """Checkpoint files other runs name: left in place."""


def _named_paths(value: Any, key: str = "") -> Iterator[str]:
    """Every string under a ``checkpoint`` key of nested dicts and lists."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _named_paths(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _named_paths(item, key)
    elif isinstance(value, str) and key == "checkpoint":
        yield value


def checkpoints_named_elsewhere(store: Store, excluding: set[str]) -> set[str]:
    """Resolved checkpoint paths that runs other than ``excluding`` read (specs, provenance)."""
    named: set[str] = set()
    for run in store.list_runs(limit=None):
        if run.id in excluding:
            continue
        for path in (*_named_paths(run.resolved_spec), *_named_paths(run.provenance)):
            named.add(str(Path(path).expanduser().resolve()))
    return named


def _stop(store: Store, run: RunInfo, force: bool) -> None:
    """Refuse a pending run unless ``force``; with it, cancel and wait for the run to stop."""
    if RunStatus(run.status) not in PENDING:
        return
    if not force:
        raise DeletionRefused(f"{run.id} is {run.status}: `robustlab cancel {run.id}` first, "
                              "or --force to cancel and delete it")
    store.request_cancel(run.id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while RunStatus(store.get_run(run.id).status) == RunStatus.RUNNING:
        if time.monotonic() > deadline:
            raise DeletionRefused(f"{run.id} was cancelled but is still running after "
                                  f"{CANCEL_WAIT_S:.0f} s; delete it once it has stopped")
        time.sleep(0.5)


def delete_runs(store: Store, run_ids: Sequence[str], *, force: bool = False,
                settings: Settings | None = None) -> list[Deleted]:
    """Delete each run with everything it wrote; refuse pending ones unless ``force``."""
    settings = settings or get_settings()
    runs = [store.get_run(run_id) for run_id in run_ids]
    for run in runs:
        _stop(store, run, force)
    named = checkpoints_named_elsewhere(store, {run.id for run in runs})
    done = []
    for run in runs:
        files = [Path(c.path) for c in store.list_checkpoints(run_id=run.id)]
        kept = [str(f) for f in files if str(f.expanduser().resolve()) in named]
        store.delete_run(run.id, checkpoints=True)
        removed = 0
        for file in files:
            if str(file) not in kept and file.is_file():
                file.unlink()
                removed += 1
        removed += _remove_run_dir(settings.runs_dir / run.id, keep={Path(k) for k in kept})
        done.append(Deleted(run.id, removed, kept))
    return done


def _remove_run_dir(directory: Path, keep: set[Path]) -> int:
    """Remove a run's scratch directory, except the files in ``keep``; how many files went."""
    if not directory.is_dir():
        return 0
    keep = {path.resolve() for path in keep}
    if not any(path.is_relative_to(directory.resolve()) for path in keep):
        count = sum(1 for path in directory.rglob("*") if path.is_file())
        shutil.rmtree(directory, ignore_errors=True)
        return count
    count = 0
    for path in directory.rglob("*"):
        if path.is_file() and path.resolve() not in keep:
            path.unlink()
            count += 1
    return count


def prunable(store: Store, statuses: Sequence[str], older_than: timedelta | None) -> list[str]:
    """Ids of the runs in ``statuses`` created more than ``older_than`` ago (all if None)."""
    cutoff = datetime.now(UTC) - older_than if older_than is not None else None
    return [run.id for status in statuses for run in store.list_runs(status=status, limit=None)
            if cutoff is None or run.created_at < cutoff]


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m`` -> a timedelta; ``ValueError`` in one line otherwise."""
    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise ValueError(f"--older-than must be like 7d, 12h, 30m or 2w, got {text!r}")
    return timedelta(**{units[unit]: int(number)})
