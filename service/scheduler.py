"""Standing evaluations: an ``evaluate`` spec re-run on every new checkpoint of a source.

``robustlab schedule add EVAL_SPEC --watch DIR`` (checkpoint files ``*.pt``/``*.pth`` in DIR) or
``--checkpoints-of EXPERIMENT`` (the final checkpoints of that experiment's succeeded runs)
registers one. ``robustlab beat`` runs ``scan`` periodically: for each checkpoint a schedule has
not yet taken on, it claims the checkpoint in the coverage table and, only if its claim won,
submits the spec with ``source.checkpoint`` set to that file. Two scanners racing over a new
checkpoint therefore enqueue one evaluation, and a failed submission gives its claim back so the
next scan tries again.

A watched folder may hold weights written elsewhere (a bare or wrapped state_dict): the spec's
``source.model`` (the architecture to load them into) is kept for every checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from contract.specs.hashing import spec_hash
from contract.specs.loading import LoadedSpec, Problem, SpecError, load_spec_file, load_spec_text
from service.queue.app import BrokerUnavailable
from service.queue.submission import Submission, submit
from service.settings import Settings
from service.store.repository import Store
from service.store.scheduling import NewSchedule, ScheduleInfo, Schedules

log = logging.getLogger(__name__)

PLACEHOLDER = "<checkpoint>"
"""Stands in for ``source.checkpoint`` in the stored template; each scan fills in a real path."""
SETTLE_S = 5.0
"""A watched file modified more recently than this may still be being copied in: wait."""


@dataclass(frozen=True)
class Submitted:
    """One checkpoint a scan took on for one schedule, and what submitting it did."""

    schedule_id: int
    checkpoint: str
    submission: Submission


@dataclass
class ScanReport:
    submitted: list[Submitted] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """One line per schedule or checkpoint that could not be handled this time."""


WATCHED_SUFFIXES = (".pt", ".pth")
"""Checkpoint files a watched directory offers (torch.save's usual suffixes)."""


def source_override(checkpoint: str, model: Any = None) -> str:
    """The ``--set`` that points an evaluate spec at a checkpoint file (JSON is valid YAML).

    ``model`` is the spec's own ``source.model`` (for foreign state_dicts), kept as written.
    """
    source: dict[str, Any] = {"checkpoint": checkpoint}
    if model is not None:
        source["model"] = model
    return "source=" + json.dumps(source)


def source_model(text: str) -> Any:
    """``source.model`` as the spec text writes it, or None (unreadable text: None too; the
    validation that follows reports it)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source.get("model") if isinstance(source, dict) else None


def load_template(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSpec:
    """Validate an ``evaluate`` spec whose ``source`` the schedule will fill in per checkpoint."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        text, data = "", None  # load_spec_file below reports the problem at its line
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind is not None and kind != "evaluate":
        raise SpecError([Problem(str(path), None, "kind",
                                 f"a standing evaluation needs an 'evaluate' spec, not {kind!r}")])
    return load_spec_file(path, [*overrides, source_override(PLACEHOLDER, source_model(text))])


def add(store: Store, spec_path: str | Path, overrides: Sequence[str] = (), *,
        watch: str | Path | None = None, checkpoints_of: str | None = None,
        queue: str | None = None, settings: Settings | None = None) -> tuple[ScheduleInfo, bool]:
    """Register a standing evaluation; returns it and whether it is new.

    Registering the same spec on the same target again returns the existing schedule.
    """
    if (watch is None) == (checkpoints_of is None):
        raise ValueError("give exactly one of --watch DIR or --checkpoints-of EXPERIMENT")
    template = load_template(spec_path, overrides)
    if watch is not None:
        directory = Path(watch).resolve()
        if not directory.is_dir():
            raise FileNotFoundError(f"no directory {watch} to watch")
        target_kind, target = "watch", str(directory)
    else:
        target_kind, target = "experiment", str(checkpoints_of)
    new = NewSchedule(
        name=template.spec.name, spec_hash=spec_hash(template.spec),
        spec=template.spec.model_dump(mode="json"), source_yaml=template.source_yaml,
        source_path=template.source_path, overrides=list(overrides), target_kind=target_kind,
        target=target, queue=queue,
    )
    return Schedules(store, settings=settings).add(new)


def spec_for(schedule: ScheduleInfo, checkpoint: str) -> LoadedSpec:
    """The schedule's spec, as written and overridden, evaluating ``checkpoint``."""
    loaded = load_spec_text(schedule.source_yaml,
                            source=schedule.source_path or f"schedule {schedule.id}",
                            overrides=[*schedule.overrides,
                                       source_override(checkpoint,
                                                       source_model(schedule.source_yaml))])
    return replace(loaded, source_path=schedule.source_path)


def candidates(schedules: Schedules, schedule: ScheduleInfo, *,
               settle_s: float = SETTLE_S) -> list[str]:
    """The checkpoints the schedule's source offers now, as absolute paths, oldest first."""
    if schedule.target_kind == "experiment":
        return schedules.final_checkpoints_of(schedule.target)
    now = time.time()
    files = [(path.stat().st_mtime, str(path.resolve()))
             for path in Path(schedule.target).iterdir()
             if path.suffix in WATCHED_SUFFIXES and path.is_file()
             and not path.name.startswith(".")]
    return [path for mtime, path in sorted(files) if now - mtime >= settle_s]


def scan(store: Store, *, settings: Settings | None = None,
         settle_s: float = SETTLE_S) -> ScanReport:
    """Submit one evaluation per (schedule, checkpoint) not yet covered; safe to run concurrently.

    Stops early when the broker is down (every submission would fail); the claims of failed
    submissions are released, so the next scan picks those checkpoints up again.
    """
    schedules = Schedules(store, settings=settings)
    report = ScanReport()
    for schedule in schedules.all():
        try:
            found = candidates(schedules, schedule, settle_s=settle_s)
        except OSError as exc:
            report.errors.append(f"schedule {schedule.id}: cannot list {schedule.target}: {exc}")
            continue
        covered = schedules.covered(schedule.id)
        for checkpoint in found:
            if checkpoint in covered or not schedules.claim(schedule.id, checkpoint):
                continue
            try:
                submitted = _submit_claimed(store, schedules, schedule, checkpoint, settings)
            except BrokerUnavailable as exc:
                report.errors.append(str(exc))
                return report
            except SpecError as exc:
                report.errors.append(f"schedule {schedule.id}: {exc.problems[0]}")
                continue
            report.submitted.append(submitted)
    return report


def _submit_claimed(store: Store, schedules: Schedules, schedule: ScheduleInfo, checkpoint: str,
                    settings: Settings | None) -> Submitted:
    """Submit the evaluation of a checkpoint this scan claimed; release the claim if that fails."""
    try:
        submission = submit(spec_for(schedule, checkpoint), store, queue=schedule.queue,
                            settings=settings)
    except BaseException:
        schedules.release(schedule.id, checkpoint)
        raise
    runs = submission.queued + submission.done + submission.pending
    schedules.record_submission(schedule.id, checkpoint, submission.spec_id,
                                [run.id for run in runs])
    log.info("schedule %d: %s -> %d run(s) queued, %d already done, %d already queued",
             schedule.id, checkpoint, len(submission.queued), len(submission.done),
             len(submission.pending))
    return Submitted(schedule.id, checkpoint, submission)
