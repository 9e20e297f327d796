"""The one line an error said before a DataLoader worker wrapped it.

An exception raised in a ``DataLoader`` worker process comes back to the main process as
``Caught RefusedData in DataLoader worker process 0.`` followed by the worker's whole
traceback (torch's ``ExceptionWrapper.reraise``): the refusal's own line, which names the bad
file, is the traceback's last line. ``failure_line`` gives that line back, so a run refused
in a worker says the same one line as a run refused in the main process.
"""

from __future__ import annotations

import re

_WRAPPED = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.")


def worker_error(exc: BaseException) -> tuple[str, str] | None:
    """(type name, message) of the error a DataLoader worker raised, if ``exc`` wraps one."""
    text = str(exc)
    found = _WRAPPED.match(text)
    if found is None:
        return None
    name = found.group(1)
    for line in reversed(text.splitlines()):  # ".../limits.RefusedData: <message>"
        head, separator, message = line.partition(": ")
        if separator and head.rsplit(".", 1)[-1] == name and " " not in head:
            return name, message.strip()
    return None


def failure_line(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, or of the error inside it when a DataLoader worker
    wrapped it."""
    inner = worker_error(exc)
    if inner is not None:
        return f"{inner[0]}: {inner[1]}"
    return f"{type(exc).__name__}: {exc}".strip()
