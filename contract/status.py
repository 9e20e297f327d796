"""The run status vocabulary, defined once.

``RunStatus`` drives the ``runs.status`` check constraint (``service.store.models``), the CLI's
``--status`` choices, the dashboard's filter, the runner and the queue. It lives in a module of
its own, importing neither SQLAlchemy nor torch, so that every layer can use it cheaply.
A ``StrEnum`` member *is* its string: it compares equal to the value stored in the database.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its life cycle.

    queued -> running -> succeeded | failed | cancelled | interrupted. ``interrupted``: the
    process was told to stop (SIGTERM, SIGINT) and stopped cleanly at a checkpoint; it is not
    pending (nothing will run it by itself) and ``robustlab resume RUN`` continues it.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

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
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED})


def check_constraint_sql(column: str = "status") -> str:
    """``status IN ('queued', ...)``: the check constraint's text, in the enum's order.

    The order and quoting match the constraint the migrations create (0001, and 0003 which
    added 'interrupted'): a new status needs a migration that replaces the constraint.
    """
    values = ", ".join(f"'{status.value}'" for status in RunStatus)
    return f"{column} IN ({values})"


def pending_sql(column: str = "status") -> str:
    """``status IN ('queued', 'running')``: the condition of the partial unique index that keeps
    one active run per cell (migration 0006 spells the same text)."""
    values = ", ".join(f"'{status.value}'" for status in RunStatus if status in PENDING)
    return f"{column} IN ({values})"
