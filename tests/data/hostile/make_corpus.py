"""Hostile input files for robustlab's checks, generated here and never checked in.

    python tests/data/hostile/make_corpus.py [DIR]      # default: tests/data/hostile/corpus/

writes one file (or folder) per case; the tests build the same corpus in a temporary folder
with ``build(directory)``. The cases (``CASES`` names them):

- ``zip_bomb.npz``: about 1 MB on disk whose ``x_train`` declares 1.4 million 28x28 uint8
  images (1.1 GB once decompressed). The deflate stream is one compressed 16 MiB block of
  zeros repeated (each block flushed with ``Z_FULL_FLUSH``, so none refers to another), so
  writing it takes a fraction of a second instead of compressing a gigabyte;
- ``label_1e9.npz``: a valid small npz whose ``y_train`` holds the label 10**9;
- ``xy_mismatch.npz``: 10 images and 7 labels; ``object_array.npz``: an object ``x_train``;
- ``fifo_folder/``: an image folder whose ``train/a/z.png`` is a FIFO (named pipe);
- ``loop_folder/``: an image folder whose ``train/a/loop`` links back to ``train/a``;
- ``truncated_folder/``: an image folder whose ``train/a/t.png`` is cut in half;
- ``bomb_folder/``: an image folder whose ``train/a/big.png`` declares 30000 x 30000 pixels;
- ``nul.yaml``, ``esc.yaml``: specs holding a NUL and an ESC character;
- ``deep_brackets.yaml``, ``deep_braces.yaml``, ``deep_dashes.yaml``, ``deep_indent.yaml``:
  specs nested 3,000 levels deep (the last one is 4.5 MB: 3,000 indentation levels need that
  many spaces, so it meets the size limit first unless ``ROBUSTLAB_MAX_SPEC_BYTES`` is raised).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

BOMB_IMAGES = 1_400_000
"""Images the zip bomb declares (28 x 28 uint8 each: 1.1 GB)."""
DEEP = 3_000
CHUNK = 16 << 20
THEORY = "name: hostile\nkind: theory\n"


# --------------------------------------------------------------------------- zip by hand


def _raw_deflate(data: bytes) -> bytes:
    """``data`` as raw deflate blocks ending on a byte boundary, referring to nothing before."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


def _final_block() -> bytes:
    return zlib.compressobj(6, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": shape})
    return buffer.getvalue()


def _zeros_member(shape: tuple[int, ...], dtype: str) -> tuple[bytes, int, int]:
    """(deflated bytes, crc32, size) of an .npy of zeros: one 16 MiB block of zeros compressed
    once and repeated."""
    header = _npy_header(shape, dtype)
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    full, rest = divmod(size, CHUNK)
    zeros = bytes(CHUNK)
    crc = zlib.crc32(header)
    for _ in range(full):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(zeros[:rest], crc)
    data = (_raw_deflate(header) + _raw_deflate(zeros) * full + _raw_deflate(zeros[:rest])
            + _final_block())
    return data, crc, len(header) + size


def _array_member(array: np.ndarray) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    raw = buffer.getvalue()
    return _raw_deflate(raw) + _final_block(), zlib.crc32(raw), len(raw)


def write_zip(path: Path, members: dict[str, tuple[bytes, int, int]]) -> None:
    """A plain zip (deflate, no zip64) of already deflated members: name -> (data, crc, size)."""
    local, central = bytearray(), bytearray()
    for name, (data, crc, size) in members.items():
        encoded = name.encode()
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data),
                             size, len(encoded), 0) + encoded + data
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc,
                               len(data), size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                      len(local), 0)
    path.write_bytes(bytes(local) + bytes(central) + end)


# --------------------------------------------------------------------------- the cases


def zip_bomb(path: Path, images: int = BOMB_IMAGES) -> Path:
    write_zip(path, {
        "x_train.npy": _zeros_member((images, 28, 28), "|u1"),
        "y_train.npy": _zeros_member((images,), "<i8"),
        "x_test.npy": _array_member(np.zeros((4, 28, 28), np.uint8)),
        "y_test.npy": _array_member(np.zeros(4, np.int64)),
    })
    return path


def small_arrays(n: int = 8, channels: int = 1) -> dict[str, np.ndarray]:
    """A valid little dataset: n training and n test images of 8x8, labels 0 and 1."""
    shape = (n, 8, 8) if channels == 1 else (n, 8, 8, channels)
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, shape, dtype=np.uint8), "y_train": np.arange(n) % 2,
            "x_test": rng.integers(0, 256, shape, dtype=np.uint8), "y_test": np.arange(n) % 2}


def label_1e9(path: Path) -> Path:
    arrays = small_arrays()
    arrays["y_train"][0] = 10**9
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def xy_mismatch(path: Path) -> Path:
    arrays = small_arrays(10)
    arrays["y_train"] = arrays["y_train"][:7]
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def object_array(path: Path) -> Path:
    arrays: dict[str, np.ndarray] = dict(small_arrays())
    arrays["x_train"] = np.empty((8, 8, 8), dtype=object)
    write_zip(path, {f"{name}.npy": _array_member(value) for name, value in arrays.items()})
    return path


def png_bytes(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(size * size, dtype=np.uint8).reshape(size, size)).save(buffer, "PNG")
    return buffer.getvalue()


def image_folder(root: Path) -> Path:
    """A valid two-class folder: train/{a,b}/ and test/{a,b}/, 8x8 grey PNGs."""
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            (root / split / label / "x.png").write_bytes(png_bytes())
    return root


def fifo_folder(root: Path) -> Path:
    image_folder(root)
    os.mkfifo(root / "train" / "a" / "z.png")
    return root


def loop_folder(root: Path) -> Path:
    image_folder(root)
    (root / "train" / "a" / "loop").symlink_to(Path("..") / "a")
    return root


def truncated_folder(root: Path) -> Path:
    image_folder(root)
    whole = png_bytes(64)
    (root / "train" / "a" / "t.png").write_bytes(whole[:len(whole) // 2])
    return root


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG whose header declares width x height grey pixels (900 million by default)."""
    header = struct.pack(">2L5B", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + _png_chunk(b"IEND", b""))


def bomb_folder(root: Path) -> Path:
    image_folder(root)
    (root / "train" / "a" / "big.png").write_bytes(bomb_png())
    return root


def nul_yaml(path: Path) -> Path:
    path.write_bytes(b"name: hostile\x00\nkind: theory\n")
    return path


def esc_yaml(path: Path) -> Path:
    path.write_bytes(b"name: hostile\nkind: theory\ndescription: \x1b[2J\x1b[31mred\n")
    return path


def deep_brackets(path: Path) -> Path:
    path.write_text(THEORY + "description: " + "[" * DEEP + "]" * DEEP + "\n")
    return path


def deep_braces(path: Path) -> Path:
    path.write_text(THEORY + "description: " + "{" * DEEP + "}" * DEEP + "\n")
    return path


def deep_dashes(path: Path) -> Path:
    path.write_text(THEORY + "description:\n" + "- " * DEEP + "x\n")
    return path


def deep_indent(path: Path) -> Path:
    path.write_text(THEORY + "description:\n"
                    + "".join(" " * (level + 1) + f"k{level}:\n" for level in range(DEEP)))
    return path


CASES: dict[str, Callable[[Path], Path]] = {
    "zip_bomb.npz": zip_bomb, "label_1e9.npz": label_1e9, "xy_mismatch.npz": xy_mismatch,
    "object_array.npz": object_array, "fifo_folder": fifo_folder, "loop_folder": loop_folder,
    "truncated_folder": truncated_folder, "bomb_folder": bomb_folder, "nul.yaml": nul_yaml,
    "esc.yaml": esc_yaml, "deep_brackets.yaml": deep_brackets, "deep_braces.yaml": deep_braces,
    "deep_dashes.yaml": deep_dashes, "deep_indent.yaml": deep_indent,
}


def build(directory: Path) -> dict[str, Path]:
    """Every case of ``CASES`` under ``directory`` (created); name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    return {name: make(directory / name) for name, make in CASES.items()}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "corpus"
    for path in build(target).values():
        print(path)
