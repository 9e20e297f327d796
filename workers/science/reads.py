"""Reads that cannot block a run forever: cancellable, and bounded by a timeout.

A read of a dataset, a checkpoint or a dataset's digests can block for good: a FIFO or a
device where a file was expected, a hung network mount, a file another process holds. Such a
read is not interruptible from Python, so ``guarded`` runs it in a daemon thread and waits
for it in slices of ``SLICE_S``, asking between slices whether the run was cancelled (the
``should_stop`` that ``cancellable_reads`` installs: the run's ``Reporter.should_stop``) and
whether the read has taken longer than ``ROBUSTLAB_READ_TIMEOUT_S``. Either ends the wait: the
run is cancelled (``Cancelled``) or refused in one line (``ReadTimedOut``); the stuck thread is
abandoned (a daemon: it never keeps the process alive).

A read that finishes returns its value or raises its own error, unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from contract.errors import Refusal
from contract.records import Cancelled

T = TypeVar("T")

READ_TIMEOUT_ENV = "ROBUSTLAB_READ_TIMEOUT_S"
DEFAULT_READ_TIMEOUT_S = 3600.0
"""One hour for one read (a dataset loaded, a checkpoint loaded, a dataset hashed): ImageNet
hashed cold from a slow disk fits; a read blocked for good is refused instead of hanging."""
SLICE_S = 0.2
"""How often a waiting run asks whether it was cancelled (the reporter throttles the store)."""

_should_stop: ContextVar[Callable[[], bool] | None] = ContextVar("should_stop", default=None)
_inside = threading.local()
"""Set in a reader thread: a guarded read inside another one runs directly."""


class ReadTimedOut(Refusal):
    """A read took longer than ``ROBUSTLAB_READ_TIMEOUT_S``."""


@contextmanager
def cancellable_reads(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Within the block, ``guarded`` reads end when ``should_stop()`` turns true."""
    token = _should_stop.set(should_stop)
    try:
        yield
    finally:
        _should_stop.reset(token)


def read_timeout_s() -> float:
    """``ROBUSTLAB_READ_TIMEOUT_S`` (default one hour); a Refusal if it is not a positive number."""
    raw = os.environ.get(READ_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_READ_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise Refusal(f"{READ_TIMEOUT_ENV} must be a positive number of seconds, not {raw!r}")
    return value


def guarded(read: Callable[[], T], what: str) -> T:
    """``read()``, ended by the run's cancellation or by the read timeout if it blocks.

    Args:
        read: the blocking read; its result or its error comes back unchanged.
        what: what it reads, for the messages ("dataset mnist", "checkpoint /runs/x.pt").

    Raises:
        Cancelled: the run was cancelled while the read was still going.
        ReadTimedOut: the read took longer than ``ROBUSTLAB_READ_TIMEOUT_S``.
    """
    if getattr(_inside, "active", False):
        return read()
    timeout = read_timeout_s()
    should_stop = _should_stop.get()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def reader() -> None:
        _inside.active = True
        try:
            outcome["value"] = read()
        except BaseException as exc:  # noqa: BLE001  handed to the waiting thread
            outcome["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=reader, name=f"read {what}", daemon=True)
    started = time.monotonic()
    thread.start()
    while not done.wait(SLICE_S):
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled while reading {what}")
        if time.monotonic() - started > timeout:
            raise ReadTimedOut(f"reading {what} took longer than {timeout:g} s "
                               f"({READ_TIMEOUT_ENV}): is it a FIFO, a device or on a hung "
                               "mount? Raise the limit if the read is just slow")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
