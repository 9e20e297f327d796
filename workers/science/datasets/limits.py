"""How much data a run may read: limits of the deployment, read from the environment.

A lab's own files (``npz``, ``image_folder``) are checked against these before they are read,
so that a hostile or broken file is one line instead of a process killed for memory:

- ``ROBUSTLAB_MAX_DATASET_BYTES``: the most bytes an npz's arrays may declare, together
  (default: half of the memory available when the run starts, ``MemAvailable`` of
  ``/proc/meminfo``, else the free physical pages ``os.sysconf`` reports);
- ``ROBUSTLAB_MAX_CLASSES``: the most classes a dataset may have (default 100,000); a label of
  10**9 would otherwise make a model with 10**9 outputs.

They are deployment settings, like ``service.settings``, but the science cannot import the
service layer, so they are read here with ``os.environ`` (docs/security.md lists them all).
"""

from __future__ import annotations

import os
from pathlib import Path

from workers.science.datasets.common import MalformedDataError

MAX_DATASET_BYTES = "ROBUSTLAB_MAX_DATASET_BYTES"
MAX_CLASSES = "ROBUSTLAB_MAX_CLASSES"
DEFAULT_MAX_CLASSES = 100_000
MEMINFO = Path("/proc/meminfo")


class RefusedData(MalformedDataError):
    """Data refused before it was read: too big, impossible, or not a regular file."""


def memory_available() -> int:
    """Bytes of memory available now: ``MemAvailable`` (Linux), else free physical pages."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30  # no way to ask: assume a small machine


def _positive(name: str) -> int | None:
    """The whole number in ``$name`` (``_`` allowed), None when unset; one line when invalid."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise RefusedData(f"{name} must be a whole number of at least 1, not {text!r}")
    return value


def max_dataset_bytes() -> int:
    """``ROBUSTLAB_MAX_DATASET_BYTES``, default half of the memory available now."""
    configured = _positive(MAX_DATASET_BYTES)
    return configured if configured is not None else memory_available() // 2


def max_classes() -> int:
    """``ROBUSTLAB_MAX_CLASSES``, default 100,000."""
    configured = _positive(MAX_CLASSES)
    return configured if configured is not None else DEFAULT_MAX_CLASSES


def size_text(n: int) -> str:
    """``n`` bytes for a message: exact, with MiB or GiB beside it when that helps."""
    if n >= 1 << 30:
        return f"{n} bytes ({n / (1 << 30):.1f} GiB)"
    if n >= 1 << 20:
        return f"{n} bytes ({n / (1 << 20):.1f} MiB)"
    return f"{n} bytes"
