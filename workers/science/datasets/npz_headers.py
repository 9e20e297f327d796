"""What an ``.npz`` declares, read off its zip directory and ``.npy`` headers, before any load.

An npz file is a zip archive of ``.npy`` members. Its central directory says how big each
member is once decompressed (``ZipInfo.file_size``) and each member starts with a header
(``numpy.lib.format.read_magic`` / ``read_array_header_1_0`` / ``_2_0``) that gives the
array's shape and dtype. Both are read here without decompressing the data (only the first few
hundred bytes of each member), so that every array is checked against the others and against
the machine before ``np.load`` allocates anything: a megabyte of zeros that declares a
gigabyte, an object array, labels that do not match the images, a shape that is no image.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy

from workers.science.datasets.limits import RefusedData, max_dataset_bytes, size_text

MAX_MEMBERS = 1024
"""Members an npz dataset may have (it needs four or five); bounds what ``ZipFile`` parses."""
MAX_DIRECTORY_BYTES = 1 << 20
"""Size of the zip's central directory that ``ZipFile`` may read into memory."""
MAX_HEADER_BYTES = 10_000
"""numpy's own default for ``max_header_size``."""
ZIP_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError,
              OverflowError, SyntaxError, TypeError, struct.error, zlib.error)
"""What zipfile, zlib and numpy's header parser raise for a damaged archive (ValueError covers
UnicodeDecodeError, OSError covers BadGzipFile-like stream errors)."""
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


@dataclass(frozen=True)
class ArrayHeader:
    """One member as its header and the zip directory declare it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    declared: int
    """Bytes of the member once decompressed, as the zip directory says (``file_size``)."""
    header: int
    """Bytes of the ``.npy`` header before the data."""

    @property
    def nbytes(self) -> int:
        """Bytes the array needs in memory, from its shape and dtype."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def size(self) -> int:
        """What loading it may cost: the larger of what the directory and the header declare."""
        return max(self.declared, self.header + self.nbytes)


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(C, H, W) of images stored as ``shape`` (N, H, W), (N, H, W, C) or (N, C, H, W), else None."""
    if len(shape) == 3:
        return (1, shape[1], shape[2])
    if len(shape) == 4 and shape[3] in (1, 3):
        return (shape[3], shape[1], shape[2])
    if len(shape) == 4 and shape[1] in (1, 3):
        return (shape[1], shape[2], shape[3])
    return None


def _directory_size(handle: BinaryIO) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory from the end records; None if none is found."""
    handle.seek(0, 2)
    end = handle.tell()
    tail_size = min(end, _EOCD.size + 0xFFFF)
    handle.seek(end - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return None
    *_, entries, size, _offset, _comment = _EOCD.unpack_from(tail, at)
    if entries == 0xFFFF or size == 0xFFFFFFFF:  # zip64: the real numbers are further back
        locator_at = end - tail_size + at - _ZIP64_LOCATOR.size
        if locator_at >= 0:
            handle.seek(locator_at)
            locator = handle.read(_ZIP64_LOCATOR.size)
            if len(locator) == _ZIP64_LOCATOR.size and locator[:4] == b"PK\x06\x07":
                handle.seek(_ZIP64_LOCATOR.unpack(locator)[2])
                record = handle.read(_ZIP64_EOCD.size)
                if len(record) == _ZIP64_EOCD.size and record[:4] == b"PK\x06\x06":
                    fields = _ZIP64_EOCD.unpack(record)
                    entries, size = fields[7], fields[8]
    handle.seek(0)
    return entries, size


def open_archive(path: Path, handle: BinaryIO) -> zipfile.ZipFile:
    """The zip directory of ``handle``, refused when it is too large to parse or no zip."""
    found = _directory_size(handle)
    if found is not None and (found[0] > MAX_MEMBERS or found[1] > MAX_DIRECTORY_BYTES):
        raise RefusedData(f"{path}: its zip directory lists {found[0]} members in "
                          f"{size_text(found[1])}; an npz dataset has a handful of arrays "
                          f"(at most {MAX_MEMBERS} members are read)")
    try:
        return zipfile.ZipFile(handle)
    except ZIP_ERRORS as exc:
        raise RefusedData(f"{path} is not a readable .npz file ({_first_line(exc)})") from None


def array_names(archive: zipfile.ZipFile) -> list[str]:
    """The names ``np.load`` gives the members (``.npy`` dropped)."""
    return [name[:-4] if name.endswith(".npy") else name for name in archive.namelist()]


def read_header(path: Path, archive: zipfile.ZipFile, name: str) -> ArrayHeader:
    """The header of array ``name``: magic, version, shape, dtype; nothing else decompressed."""
    members = set(archive.namelist())
    member = name if name in members else f"{name}.npy"  # np.load's order
    info = archive.getinfo(member)
    try:
        with archive.open(info) as stream:
            version = npy.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(stream, max_header_size=MAX_HEADER_BYTES)
            elif version == (2, 0):
                shape, _, dtype = npy.read_array_header_2_0(stream, max_header_size=MAX_HEADER_BYTES)
            else:
                raise ValueError(f"npy format version {version[0]}.{version[1]} is not read")
            header = stream.tell()
    except ZIP_ERRORS as exc:
        raise RefusedData(f"{path}: {name} is not a readable .npy array ({_first_line(exc)})") from None
    return ArrayHeader(name, tuple(int(v) for v in shape), np.dtype(dtype), info.file_size, header)


def check_headers(path: Path, headers: dict[str, ArrayHeader]) -> None:
    """Each array possible, x and y of each split of one length, and all of them within the
    memory limit (``ROBUSTLAB_MAX_DATASET_BYTES``); one line naming the file and the array."""
    for header in headers.values():
        if not header.dtype.hasobject and header.declared < header.header + header.nbytes:
            raise RefusedData(f"{path}: {header.name} declares {_described(header)} "
                              f"({size_text(header.nbytes)}) but its member holds "
                              f"{size_text(header.declared)}: truncated or forged")
    for split in ("train", "test"):
        x, y = headers[f"x_{split}"], headers[f"y_{split}"]
        _check_images(path, x)
        if y.dtype.hasobject or y.dtype.kind not in "iu" or len(y.shape) != 1:
            raise RefusedData(f"{path}: {y.name} must be {x.shape[0]} integer labels, "
                              f"got {_described(y)}")
        if y.shape[0] != x.shape[0]:
            raise RefusedData(f"{path}: {y.name} holds {y.shape[0]} labels but {x.name} holds "
                              f"{x.shape[0]} images: one label per image")
    train, test = (image_layout(headers[name].shape) for name in ("x_train", "x_test"))
    if train != test:
        raise RefusedData(f"{path}: x_train images are {train} but x_test images are {test}")
    if "classes" in headers:
        names = headers["classes"]
        if names.dtype.hasobject or names.dtype.kind not in "USiub" or len(names.shape) != 1:
            raise RefusedData(f"{path}: classes must be a list of class names, got "
                              f"{_described(names)}")
    limit = max_dataset_bytes()
    total = sum(header.size for header in headers.values())
    if total > limit:
        largest = max(headers.values(), key=lambda header: header.size)
        raise RefusedData(f"{path}: its arrays declare {size_text(total)} ({largest.name} is "
                          f"{_described(largest)}, {size_text(largest.size)}), more than the "
                          f"{size_text(limit)} a dataset may take (ROBUSTLAB_MAX_DATASET_BYTES, "
                          "by default half of the memory available)")


def _check_images(path: Path, x: ArrayHeader) -> None:
    if x.dtype.hasobject or not (x.dtype == np.uint8 or x.dtype.kind == "f"):
        kind = "object" if x.dtype.hasobject else str(x.dtype)
        raise RefusedData(f"{path}: {x.name} is {kind}; images are uint8 or floats in [0, 1]")
    if image_layout(x.shape) is None:
        raise RefusedData(f"{path}: {x.name} has shape {x.shape}; images are (N, H, W), "
                          "(N, H, W, C) or (N, C, H, W) with C 1 or 3")


def _described(header: ArrayHeader) -> str:
    kind = "object" if header.dtype.hasobject else str(header.dtype)
    return f"{kind} {header.shape}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
