"""sha256 digests of data files, cached across runs, keyed by each file's size and mtime.

Every run records the hash of the data it read (provenance). Hashing the data again in every
run costs seconds for MNIST and hours for ImageNet; a file whose size and modification time
(nanoseconds) are unchanged is taken to be unchanged, as ``make`` and ``rsync`` do, and its
digest is read from a small JSON cache instead. Any change of size or mtime (a rewrite, a
``touch``, a copy) makes the file be read again.

Where the cache lives: ``ROBUSTLAB_DIGEST_CACHE`` (a file path, or ``off``), by default
``$XDG_CACHE_HOME/robustlab/file-digests.json`` (``~/.cache/...``). The cache is a
convenience: an unreadable or unwritable cache file is ignored (digests are then computed), and
concurrent workers at worst recompute a digest, since the file is replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "ROBUSTLAB_DIGEST_CACHE"
"""Environment variable naming the cache file; ``off`` disables the on-disk cache."""
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileStamp:
    """What identifies a file's version without reading it."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        stat = path.stat()
        return cls(size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def default_cache_path() -> Path | None:
    """The cache file from ``ROBUSTLAB_DIGEST_CACHE`` or the XDG cache directory; None if off."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return None if configured.strip().lower() in {"", "off", "none"} else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robustlab" / "file-digests.json"


def sha256_of(path: Path) -> str:
    """Read the whole file: its sha256 hex digest."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """Digests by resolved path, valid while (size, mtime_ns) match; kept in memory and on disk.

    Args:
        path: the JSON file; None keeps the cache in this process only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, object]] = self._read()
        self._dirty = False
        self.computed = 0
        """Files actually read by this cache (for tests and curiosity)."""

    def digest(self, file: Path) -> str:
        """sha256 of ``file``: from the cache if its size and mtime are unchanged, else read."""
        return self.digests([file])[0]

    def digests(self, files: Sequence[Path]) -> list[str]:
        """sha256 of each file; the cache file is written once at the end, not once per file
        (an image folder of N files would otherwise rewrite the whole cache N times)."""
        values = [self._lookup_or_read(file) for file in files]
        if self._dirty:
            self._write()
            self._dirty = False
        return values

    def _lookup_or_read(self, file: Path) -> str:
        key = str(file.resolve())
        stamp = FileStamp.of(file)
        entry = self._entries.get(key)
        if entry is not None and entry.get("size") == stamp.size and entry.get("mtime_ns") == stamp.mtime_ns:
            return str(entry["sha256"])
        value = sha256_of(file)
        self.computed += 1
        if FileStamp.of(file) == stamp:  # not rewritten while we read it
            self._entries[key] = {"size": stamp.size, "mtime_ns": stamp.mtime_ns, "sha256": value}
            self._dirty = True
        return value

    def _read(self) -> dict[str, dict[str, object]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        """Merge with what other processes wrote meanwhile, then replace the file atomically."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = {**self._read(), **self._entries}
            fd, tmp = tempfile.mkstemp(prefix=".digests.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(merged, handle, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            return  # a read-only home or a full disk: digests are still correct, just not kept


_CACHE: DigestCache | None = None


def _process_cache() -> DigestCache:
    """The process-wide cache (created on first use, again if ROBUSTLAB_DIGEST_CACHE changed)."""
    global _CACHE
    wanted = default_cache_path()
    if _CACHE is None or _CACHE.path != wanted:
        _CACHE = DigestCache(wanted)
    return _CACHE


def file_digest(path: Path) -> str:
    """sha256 of one data file, through the process-wide cache."""
    return _process_cache().digest(path)


def file_digests(paths: Sequence[Path]) -> list[str]:
    """sha256 of each data file, through the process-wide cache, saving it once."""
    return _process_cache().digests(paths)
