"""The run status vocabulary, defined once.

``RunStatus`` drives the ``runs.status`` check constraint (``service.store.models``), the CLI's
``--status`` choices, the dashboard's filter, the runner and the queue. It lives in a module of
its own, importing neither SQLAlchemy nor torch, so that every layer can use it cheaply.
A ``StrEnum`` member *is* its string: it compares equal to the value stored in the database.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its life cycle: queued -> running -> succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def pending(self) -> bool:
        """Not finished yet: a worker or an in-process run will (or may) still execute it."""
        return self in PENDING

    @property
    def terminal(self) -> bool:
        """Finished: nothing will change its results unless it is resumed or re-run."""
        return self in TERMINAL


PENDING: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
TERMINAL: frozenset[RunStatus] = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


def check_constraint_sql(column: str = "status") -> str:
    """``status IN ('queued', ...)``: the check constraint's text, in the enum's order.

    The order and quoting match migration 0001's constraint exactly, so deriving it from the
    enum changes nothing in the schema (no migration).
    """
    values = ", ".join(f"'{status.value}'" for status in RunStatus)
    return f"{column} IN ({values})"
