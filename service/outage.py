"""Riding out a database outage: how long a run goes on without its database, and what then.

A running run's records are held in memory while the database does not answer
(``service.recording.StoreReporter``) and written when it answers again; the science goes on.
Past ``ROBUSTLAB_DB_OUTAGE_S`` (60 s) the run stops (``DatabaseOutage``) and is marked failed
with the reason as soon as the database answers (``until_answered``): a run never stays
'running' with a live process that cannot write, and never vanishes without its reason.
Torch-free, like ``service.recording``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from service.store.repository import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_EVERY_S = 2.0
"""How often a run that lost its database asks whether it answers again (one try each)."""


class DatabaseOutage(DatabaseUnavailable):
    """The database has not answered for longer than ``ROBUSTLAB_DB_OUTAGE_S``: the run stops."""


class Outage:
    """Since when one run's database has not answered, and whether that is too long.

    The clock starts at the first write that failed (its retries included) and stops at the
    first write that succeeds.
    """

    def __init__(self, limit_s: float, *, probe_every_s: float = PROBE_EVERY_S) -> None:
        self.limit_s = limit_s
        self.probe_every_s = probe_every_s
        self.since: float | None = None
        """``time.monotonic()`` when the outage began; None while the database answers."""
        self.began_at: datetime | None = None
        self.error = ""
        self._last_try = 0.0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def elapsed_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def exceeded(self) -> bool:
        return self.ongoing and self.elapsed_s() > self.limit_s

    def due(self) -> bool:
        """Whether to try the database now: always while it answers, every
        ``probe_every_s`` while it does not (a try per progress tick would stall the science)."""
        return not self.ongoing or time.monotonic() - self._last_try >= self.probe_every_s

    def failed(self, started: float, exc: Exception) -> None:
        """A write begun at ``started`` (monotonic) found the database unreachable."""
        self._last_try = time.monotonic()
        self.error = str(exc)
        if self.since is None:
            self.since = started
            self.began_at = datetime.now(UTC)
            log.warning("database unreachable (%s): holding the run's records for up to %g s",
                        exc, self.limit_s)

    def answered(self) -> None:
        if self.since is not None:
            log.warning("database answered again after %.0f s: held records written",
                        self.elapsed_s())
        self.since = None
        self.began_at = None

    def check(self) -> None:
        """Raise ``DatabaseOutage`` once the outage lasted longer than the limit."""
        if self.exceeded():
            raise DatabaseOutage(self.reason())

    def reason(self) -> str:
        """The run's error when the outage stopped it: one line, with the remedy."""
        began = f" since {self.began_at:%H:%M:%S} UTC" if self.began_at else ""
        return (f"the database did not answer for more than {self.limit_s:g} s{began} "
                f"(ROBUSTLAB_DB_OUTAGE_S; last error: {self.error}); the run stopped there: "
                "`robustlab resume` continues it from its last checkpoint")


def until_answered(action: Callable[[], T], *, what: str,
                   probe_every_s: float = PROBE_EVERY_S) -> T:
    """``action()``, tried again every ``probe_every_s`` while the database is unreachable.

    For the writes that end a run: giving up would leave it 'running' with no process behind
    it, so this waits as long as the process lives (a stop signal still ends the wait).
    """
    told = False
    while True:
        try:
            return action()
        except DatabaseOutage:
            raise
        except DatabaseUnavailable as exc:
            if not told:
                log.warning("database unreachable (%s): %s as soon as it answers", exc, what)
                told = True
            time.sleep(probe_every_s)
