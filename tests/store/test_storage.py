"""Local artifact storage: content hashes, atomic writes, and no escaping the root."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from service.store.storage import LocalStorage, Storage, sha256_file


def test_put_get_round_trip_with_sha256(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "artifacts")
    assert isinstance(storage, Storage)
    data = bytes(range(256)) * 100
    digest = storage.put("run1/grid.png", data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert storage.get("run1/grid.png") == data
    assert storage.exists("run1/grid.png") and not storage.exists("run1/other.png")
    path = storage.local_path("run1/grid.png")
    assert path is not None and path.read_bytes() == data
    assert sha256_file(path, chunk_size=1000) == digest
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, "readable by a dashboard user"


def test_put_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("run1/a.npz", b"first")
    storage.put("run1/a.npz", b"second")
    assert storage.get("run1/a.npz") == b"second"
    assert [p.name for p in (tmp_path / "run1").iterdir()] == ["a.npz"]


def test_delete_is_idempotent(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("run1/a.png", b"x")
    storage.delete("run1/a.png")
    storage.delete("run1/a.png")
    assert not storage.exists("run1/a.png")
    with pytest.raises(FileNotFoundError):
        storage.get("run1/a.png")


@pytest.mark.parametrize("relpath", ["../outside.png", "/etc/passwd", "run1/../../x", "."])
def test_paths_outside_the_root_are_refused(tmp_path: Path, relpath: str) -> None:
    storage = LocalStorage(tmp_path / "artifacts")
    with pytest.raises(ValueError, match="outside"):
        storage.put(relpath, b"x")
    assert not (tmp_path / "outside.png").exists()
