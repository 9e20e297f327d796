"""Where artifact bytes live: one small interface, a local directory by default.

The database holds only an artifact's relative path, hash and size; the bytes go through a
``Storage``, so a deployment can put them elsewhere (a shared volume, an object store) by
providing another implementation of the same five methods.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Storage(Protocol):
    """Bytes addressed by a relative path such as ``"<run_id>/tradeoff.png"``."""

    def put(self, relpath: str, data: bytes) -> str:
        """Store ``data`` atomically (readers never see half a file); return its sha256 hex."""
        ...

    def get(self, relpath: str) -> bytes: ...

    def local_path(self, relpath: str) -> Path | None:
        """A filesystem path to the bytes, or ``None`` when they are not on a local disk."""
        ...

    def exists(self, relpath: str) -> bool: ...

    def delete(self, relpath: str) -> None:
        """Remove the bytes; nothing happens if they are already gone."""
        ...


class LocalStorage:
    """A ``Storage`` in a local directory (``ROBUSTLAB_ARTIFACT_DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, relpath: str, data: bytes) -> str:
        target = self._resolve(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                             suffix=".tmp")
        try:
            os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide it from a dashboard user
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return hashlib.sha256(data).hexdigest()

    def get(self, relpath: str) -> bytes:
        return self._resolve(relpath).read_bytes()

    def local_path(self, relpath: str) -> Path | None:
        return self._resolve(relpath)

    def exists(self, relpath: str) -> bool:
        return self._resolve(relpath).is_file()

    def delete(self, relpath: str) -> None:
        self._resolve(relpath).unlink(missing_ok=True)

    def _resolve(self, relpath: str) -> Path:
        """The file for ``relpath``, refusing paths that would leave the root directory."""
        root = self.root.resolve()
        target = (root / relpath).resolve()
        if target == root or not target.is_relative_to(root):
            raise ValueError(f"artifact path {relpath!r} is outside {self.root}")
        return target


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks (checkpoints can be hundreds of megabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
