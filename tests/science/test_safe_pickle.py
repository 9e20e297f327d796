"""The restricted unpickler reads CIFAR-10 batches and runs nothing else (issue 13, probe (c)).

The malicious pickles are real ones: each would create a canary file when loaded with
``pickle.load``; the test first proves that, then that the CIFAR-10 loader, reached through a
spec's ``dataset.root``, refuses the file with one line naming it and the canary never appears.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.specs.data import DatasetConfig
from workers.science.datasets import CIFAR10_BATCHES, load_dataset
from workers.science.safe_pickle import UnsafePickleError, load_cifar_batch, load_restricted


def _python2_batch(data: bytes, shape: tuple[int, int], labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote CIFAR-10 (protocol 2, ``str`` keys and array bytes).

    Hand-assembled from opcodes, since Python 3 cannot write py2 ``str``: the globals are
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``, the array's
    bytes a ``BINSTRING`` that ``encoding="latin1"`` turns into text.
    """

    def string(text: bytes) -> bytes:  # BINSTRING: a py2 str
        return b"T" + struct.pack("<I", len(text)) + text

    def small(value: int) -> bytes:
        return b"K" + bytes([value])

    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n" + small(0) + b"\x85"
        + string(b"b") + b"\x87R"
        + b"(" + small(1) + small(shape[0]) + b"M" + struct.pack("<H", shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + string(b"u1") + small(0) + small(1) + b"\x87R"
        + b"(" + small(3) + string(b"|") + b"NNN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"
        + small(0) + b"tb" + b"\x89" + string(data) + b"tb"
    )
    label_list = b"]" + b"(" + b"".join(small(v) for v in labels) + b"e"
    return (b"\x80\x02}(" + string(b"batch_label") + string(b"training batch 1 of 5")
            + string(b"data") + array + string(b"labels") + label_list + b"u.")


def test_a_python2_cifar_batch_loads_as_pickle_would(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
    raw = _python2_batch(pixels.tobytes(), (2, 3072), [3, 7])
    reference = pickle.loads(raw, encoding="latin1")  # what the unrestricted reader makes of it
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw)
    entry = load_cifar_batch(path)
    assert entry.keys() == reference.keys() == {"batch_label", "data", "labels"}
    np.testing.assert_array_equal(entry["data"], pixels)
    np.testing.assert_array_equal(entry["data"], reference["data"])
    assert entry["labels"] == [3, 7] and entry["batch_label"] == "training batch 1 of 5"


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_batches_pickled_by_current_numpy_load_at_every_protocol(protocol: int) -> None:
    entry = {"batch_label": "test", "data": np.arange(12, dtype=np.uint8).reshape(2, 6),
             "labels": [1, 2], "filenames": [b"a.png", "b.png"], "scale": 0.5, "n": (1, None)}
    loaded = load_restricted(io.BytesIO(pickle.dumps(entry, protocol=protocol)))
    np.testing.assert_array_equal(loaded.pop("data"), entry.pop("data"))
    assert loaded == entry


class _Shell:
    """Pickles to ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (self.command,)


class _Popen:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __reduce__(self) -> tuple[Any, ...]:
        return subprocess.Popen, (self.argv,)


class _Eval:
    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[Any, ...]:
        return eval, (self.source,)


def _payloads(canary: Path) -> dict[str, bytes]:
    """Pickles that each create ``canary`` under plain ``pickle.load``."""
    shell = f"touch {canary}"
    inside = {"data": np.zeros((1, 3072), np.uint8), "labels": [0]}
    return {
        "os.system": pickle.dumps({**inside, "labels": _Shell(shell)}),
        "subprocess.Popen": pickle.dumps(_Popen(["touch", str(canary)]), protocol=2),
        "builtins.eval": pickle.dumps(_Eval(f"open({str(canary)!r}, 'w').close()")),
        "object array": pickle.dumps({**inside, "data": np.array([_Shell(shell)], dtype=object)}),
    }


@pytest.mark.parametrize("payload", ["os.system", "subprocess.Popen", "builtins.eval",
                                     "object array"])
def test_a_malicious_pickle_is_dangerous_under_pickle_load(tmp_path: Path, payload: str) -> None:
    """The control: the payloads really do run code when unpickled the usual way."""
    canary = tmp_path / "canary"
    result = pickle.loads(_payloads(canary)[payload])  # noqa: S301 - the point of the control
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert canary.exists()


@pytest.mark.parametrize("payload", ["os.system", "subprocess.Popen", "builtins.eval",
                                     "object array"])
def test_a_malicious_cifar_folder_reached_through_dataset_root_runs_nothing(
    tmp_path: Path, payload: str
) -> None:
    canary = tmp_path / "canary"
    folder = tmp_path / "elsewhere" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in (*CIFAR10_BATCHES, "test_batch"):
        (folder / name).write_bytes(_payloads(canary)[payload])
    cfg = DatasetConfig.model_validate(
        {"name": "cifar10", "root": str(tmp_path / "elsewhere"), "augment": False})
    for train in (True, False):
        with pytest.raises(UnsafePickleError) as raised:
            load_dataset(cfg, tmp_path / "unused", train=train)
        message = str(raised.value)
        assert "\n" not in message
        assert str(folder / ("data_batch_1" if train else "test_batch")) in message
        assert "not a CIFAR-10 python batch" in message
    assert not canary.exists()


@pytest.mark.parametrize("raw, says", [
    (b"", "Ran out of input"),
    (pickle.dumps({"data": 1})[:-3], "truncated"),
    (b"not a pickle at all", ""),
    (pickle.dumps([1, 2, 3]), "a list, not a dict"),
    (pickle.dumps(np.ma.masked_array([1, 2])), "not allowed"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00rot_13\x86R.", "rot_13"),
])
def test_anything_else_is_one_line_naming_the_file(tmp_path: Path, raw: bytes, says: str) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(raw)
    with pytest.raises(UnsafePickleError) as raised:
        load_cifar_batch(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: not a CIFAR-10 python batch")
    assert "\n" not in message and says in message
