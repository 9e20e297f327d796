"""Who records a run (``runs.submitted_by``): the OIDC e-mail in the dashboard, the OS user elsewhere.

The store asks ``current_submitter()`` when it writes new runs, so the callers in between
(``record``, ``queue.submit``, the scheduler) need no parameter for it. The dashboard wraps a
submission in ``submitting_as(email)``; that is a ``ContextVar``, so each Streamlit session's
thread sees only its own user. A child process (the dashboard's "Run locally") is told through
``ROBUSTLAB_SUBMITTED_BY``.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from service.settings import get_settings

SUBMITTED_BY_ENV = "ROBUSTLAB_SUBMITTED_BY"
MAX_LENGTH = 255
"""``runs.submitted_by`` is a String(255)."""

_SUBMITTER: ContextVar[str | None] = ContextVar("robustlab_submitter", default=None)


@contextmanager
def submitting_as(who: str | None) -> Iterator[None]:
    """Record runs written inside the block as submitted by ``who`` (``None``: the default)."""
    token = _SUBMITTER.set(who)
    try:
        yield
    finally:
        _SUBMITTER.reset(token)


def os_user() -> str:
    """The OS user name; a container without a passwd entry for its uid gets ``uid:N``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def current_submitter() -> str:
    """``submitting_as``, else ``ROBUSTLAB_SUBMITTED_BY``, else the OS user (truncated to fit)."""
    who = _SUBMITTER.get() or get_settings().submitted_by or os_user()
    return who[:MAX_LENGTH]
