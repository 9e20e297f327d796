"""Read CIFAR-10's python batches without letting a pickle run code.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable and its
``REDUCE`` opcode calls it, so ``pickle.load`` on a file from a user-chosen ``dataset.root``
(``os.system``, ``subprocess.Popen``, ``builtins.eval`` ...) runs whatever the file says. The
restricted unpickler here resolves only the handful of globals that CIFAR-10's files (written by
Python 2's cPickle, protocol 2) and numpy arrays pickled by a current numpy (the tests' small
batches, any subset someone re-saved) actually use:

- the containers and scalars (dict, list, tuple, str, bytes, int, float) need no global at all;
- ``numpy.core.multiarray._reconstruct`` + ``numpy.ndarray`` + ``numpy.dtype`` rebuild an array
  (protocol 2), ``numpy.core.numeric._frombuffer`` does (protocol 5); ``numpy._core`` is
  numpy 2's name for the same modules;
- ``_codecs.encode(text, "latin1")`` is how Python 3 writes ``bytes`` at protocol 2.

Object arrays are refused (their items would be whatever the file says), and so is any other
global, with one line naming the file and the global. The same idea as ``torch.load``'s
``weights_only=True`` (torch ``_weights_only_unpickler.py``) and the pickle documentation's
"Restricting Globals" recipe, cut down to exactly one file format.
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# numpy 2 moved numpy.core to numpy._core; old pickles name the former, new ones the latter.
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric

from contract.errors import Refusal


class UnsafePickleError(ValueError, Refusal):
    """A pickle asked for something a CIFAR-10 batch never holds; nothing of it was run."""


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype[Any]:
    """``numpy.dtype`` for plain data only: an object dtype would let the file pick the items."""
    dtype = np.dtype(spec, align=align, copy=copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"object arrays are not allowed (dtype {dtype})")
    return dtype


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to the latin-1 that protocol-2 ``bytes`` are written with."""
    if codecs.lookup(encoding).name != "iso8859-1" or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin-1")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy.ndarray arrays are allowed")
    return _multiarray._reconstruct(subtype, shape, dtype)  # type: ignore[no-any-return]


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return _numeric._frombuffer(buffer, dtype, shape, order)  # type: ignore[attr-defined]


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    **{(module, "_reconstruct"): _reconstruct
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _frombuffer
       for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
}
"""(module, name) in the pickle -> what it gets instead of an import. Nothing else resolves."""


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler whose globals come only from ``_ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_restricted(handle: BinaryIO, *, encoding: str = "latin1") -> Any:
    """Unpickle from ``handle`` admitting only containers, scalars and plain numpy arrays.

    ``encoding="latin1"`` is what Python 2 pickles of numpy arrays need (the array bytes were
    a ``str``), and what torchvision uses for CIFAR-10. Raises ``pickle.UnpicklingError``.
    """
    return _CifarUnpickler(handle, encoding=encoding).load()


def load_cifar_batch(path: str | Path) -> dict[str, Any]:
    """One ``cifar-10-batches-py`` file as its dict; ``UnsafePickleError`` names the file.

    Any failure to decode (a forbidden global, a truncated file, a non-dict) is one line:
    ``<path>: not a CIFAR-10 python batch (<reason>); nothing in it was run``.
    """
    data = Path(path).read_bytes()
    try:
        entry = load_restricted(io.BytesIO(data))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
            AttributeError, IndexError, UnicodeDecodeError, MemoryError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafePickleError(
            f"{path}: not a CIFAR-10 python batch ({reason}); nothing in it was run") from None
    if not isinstance(entry, dict):
        raise UnsafePickleError(
            f"{path}: not a CIFAR-10 python batch (a {type(entry).__name__}, not a dict)")
    return entry
