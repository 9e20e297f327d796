"""The data-hash cache: digests survive across runs, and a changed file is hashed again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from workers.science import data_hash
from workers.science.data_hash import DigestCache


def test_cached_digests_survive_a_new_process_and_change_with_the_file(tmp_path: Path) -> None:
    data = tmp_path / "images.bin"
    data.write_bytes(b"a" * 1000)
    cache_file = tmp_path / "cache" / "digests.json"
    first = DigestCache(cache_file)
    assert first.digest(data) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert first.computed == 1 and cache_file.is_file()

    later = DigestCache(cache_file)  # another run: reads the cache, not the file
    assert later.digest(data) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert later.computed == 0

    data.write_bytes(b"b" * 1000)  # same size, new content and mtime
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000))  # even within one tick
    assert later.digest(data) == hashlib.sha256(b"b" * 1000).hexdigest()
    assert later.computed == 1
    data.write_bytes(b"b" * 999)  # another size
    assert DigestCache(cache_file).digest(data) == hashlib.sha256(b"b" * 999).hexdigest()


def test_a_broken_or_unwritable_cache_is_ignored(tmp_path: Path) -> None:
    data = tmp_path / "x.bin"
    data.write_bytes(b"xyz")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert DigestCache(broken).digest(data) == hashlib.sha256(b"xyz").hexdigest()
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert DigestCache(blocked / "digests.json").digest(data) == hashlib.sha256(b"xyz").hexdigest()


def test_cache_location_follows_the_environment(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_hash.CACHE_ENV, "off")
    assert data_hash.default_cache_path() is None
    monkeypatch.setenv(data_hash.CACHE_ENV, str(tmp_path / "d.json"))
    assert data_hash.default_cache_path() == tmp_path / "d.json"
    monkeypatch.delenv(data_hash.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_hash.default_cache_path() == tmp_path / "xdg" / "robustlab" / "file-digests.json"
    (tmp_path / "f").write_bytes(b"1")
    assert data_hash.file_digest(tmp_path / "f") == hashlib.sha256(b"1").hexdigest()
    assert (tmp_path / "xdg" / "robustlab" / "file-digests.json").is_file()
