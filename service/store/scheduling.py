"""Standing evaluations in the database: schedules, their coverage, and the checkpoints they watch.

The scheduler (``service.scheduler``) decides what to evaluate; this module only reads and writes
rows and returns plain dataclasses, like ``repository.Store``. The one subtle operation is
``claim``: an ``INSERT ... ON CONFLICT DO NOTHING`` on the coverage table's unique
``(schedule_id, checkpoint)``, so that of two scanners racing over one new checkpoint exactly
one wins and enqueues its evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contract.status import RunStatus
from service.settings import Settings, get_settings
from service.store.models import Checkpoint, Run, Schedule, ScheduleCoverage
from service.store.repository import Store
from service.store.session import ManagedSessions, RetryPolicy, StoreError

__all__ = ["NewSchedule", "ScheduleInfo", "ScheduleNotFound", "Schedules", "TARGET_KINDS"]

TARGET_KINDS = ("watch", "experiment")


class ScheduleNotFound(StoreError, LookupError):
    """No schedule has the given id."""


@dataclass(frozen=True)
class NewSchedule:
    """A standing evaluation to register: the spec as written, and what it watches."""

    name: str
    spec_hash: str
    spec: dict[str, Any]
    source_yaml: str
    source_path: str | None
    overrides: list[str]
    target_kind: str
    target: str
    queue: str | None = None


@dataclass(frozen=True)
class ScheduleInfo:
    """A standing evaluation as stored, with how many checkpoints it has taken on."""

    id: int
    name: str
    spec_hash: str
    spec: dict[str, Any]
    source_yaml: str
    source_path: str | None
    overrides: list[str]
    target_kind: str
    target: str
    queue: str | None
    created_at: datetime
    covered: int


class Schedules:
    """Schedules and coverage over the store's database, one transaction per method.

    Args:
        store: whose engine to use (the same database as the runs and checkpoints).
        retry: how long to wait out an unreachable database; default from the settings.
    """

    def __init__(self, store: Store, *, retry: RetryPolicy | None = None,
                 settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self.engine = store.engine
        self._sessions = ManagedSessions(
            store.engine,
            retry or RetryPolicy(settings.db_retry_attempts, settings.db_retry_base_delay_s),
        )

    def add(self, new: NewSchedule) -> tuple[ScheduleInfo, bool]:
        """Register a schedule; the same spec on the same target is registered once.

        Returns the schedule and whether it is new (``False``: it was already there).
        """
        if new.target_kind not in TARGET_KINDS:
            raise ValueError(f"target_kind must be one of {TARGET_KINDS}, not {new.target_kind!r}")
        values = {field.name: getattr(new, field.name) for field in fields(NewSchedule)}

        def work(session: Session) -> tuple[ScheduleInfo, bool]:
            inserted = session.execute(
                self._insert(Schedule).values(values)
                .on_conflict_do_nothing(index_elements=["spec_hash", "target_kind", "target"])
                .returning(Schedule.id)).scalar()
            row = session.scalars(select(Schedule).where(
                Schedule.spec_hash == new.spec_hash, Schedule.target_kind == new.target_kind,
                Schedule.target == new.target)).one()
            return _schedule_info(session, row), inserted is not None

        return self._sessions.run(work)

    def get(self, schedule_id: int) -> ScheduleInfo:
        def work(session: Session) -> ScheduleInfo:
            return _schedule_info(session, _ensure_schedule(session, schedule_id))

        return self._sessions.run(work)

    def all(self) -> list[ScheduleInfo]:
        """Every schedule, oldest first."""

        def work(session: Session) -> list[ScheduleInfo]:
            rows = session.scalars(select(Schedule).order_by(Schedule.id))
            return [_schedule_info(session, row) for row in rows]

        return self._sessions.run(work)

    def remove(self, schedule_id: int) -> ScheduleInfo:
        """Delete a schedule and its coverage; runs it already submitted are left alone."""

        def work(session: Session) -> ScheduleInfo:
            row = _ensure_schedule(session, schedule_id)
            info = _schedule_info(session, row)
            session.delete(row)
            return info

        return self._sessions.run(work)

    def covered(self, schedule_id: int) -> set[str]:
        """The checkpoints this schedule has already taken on."""
        query = select(ScheduleCoverage.checkpoint).where(
            ScheduleCoverage.schedule_id == schedule_id)
        return self._sessions.run(lambda session: set(session.scalars(query)))

    def claim(self, schedule_id: int, checkpoint: str) -> bool:
        """Take on ``checkpoint`` for this schedule; ``True`` only for the one caller that won."""

        def work(session: Session) -> bool:
            statement = (self._insert(ScheduleCoverage)
                         .values(schedule_id=schedule_id, checkpoint=checkpoint, run_ids=[])
                         .on_conflict_do_nothing(index_elements=["schedule_id", "checkpoint"])
                         .returning(ScheduleCoverage.id))
            return session.execute(statement).scalar() is not None

        return self._sessions.run(work)

    def record_submission(self, schedule_id: int, checkpoint: str, spec_id: str,
                          run_ids: Sequence[str]) -> None:
        """Note which spec and runs a claimed checkpoint became."""
        statement = (update(ScheduleCoverage)
                     .where(ScheduleCoverage.schedule_id == schedule_id,
                            ScheduleCoverage.checkpoint == checkpoint)
                     .values(spec_id=spec_id, run_ids=list(run_ids)))
        self._sessions.run(lambda session: session.execute(statement))

    def release(self, schedule_id: int, checkpoint: str) -> None:
        """Give a claim back (its submission failed), so that the next scan tries again."""
        statement = delete(ScheduleCoverage).where(ScheduleCoverage.schedule_id == schedule_id,
                                                   ScheduleCoverage.checkpoint == checkpoint)
        self._sessions.run(lambda session: session.execute(statement))

    def final_checkpoints_of(self, experiment: str) -> list[str]:
        """Paths of the final checkpoints of the experiment's succeeded runs, oldest first."""
        query = (select(Checkpoint.path).join(Run, Run.id == Checkpoint.run_id)
                 .where(Run.experiment == experiment, Run.status == RunStatus.SUCCEEDED.value,
                        Checkpoint.final.is_(True))
                 .order_by(Checkpoint.created_at, Checkpoint.id))
        return self._sessions.run(lambda session: list(session.scalars(query)))

    def _insert(self, model: type[Any]) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` and ``returning``."""
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        return dialect.insert(model.__table__)


def _ensure_schedule(session: Session, schedule_id: int) -> Schedule:
    row = session.get(Schedule, schedule_id)
    if row is None:
        raise ScheduleNotFound(f"no schedule with id {schedule_id}")
    return row


def _schedule_info(session: Session, row: Schedule) -> ScheduleInfo:
    covered = session.scalar(select(func.count()).select_from(ScheduleCoverage)
                             .where(ScheduleCoverage.schedule_id == row.id)) or 0
    values: dict[str, Any] = {field.name: getattr(row, field.name)
                              for field in fields(ScheduleInfo) if field.name != "covered"}
    created = values["created_at"]
    values["created_at"] = (created.replace(tzinfo=UTC) if created.tzinfo is None
                            else created.astimezone(UTC))  # SQLite gives naive UTC datetimes
    return ScheduleInfo(**values, covered=covered)
