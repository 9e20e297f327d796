"""robustlab's one ``torch.load``: ``weights_only=True``, and one line when a file is refused.

Checkpoints (``checkpoints``), foreign state dicts (``state_dicts``) and torchvision's
pretrained weights (``models.pretrained``) are all read here, so they are refused alike: with
the class the file asked for and the remedy, never torch's hint about the default of
``weights_only``, which advises loading the file with its code.
"""

from __future__ import annotations

import contextlib
import pickle
import pickletools
import re
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch

from contract.errors import Refusal


class UnsafeCheckpoint(ValueError, Refusal):
    """A file holding more than tensors and plain containers; nothing of it was unpickled."""


_WANTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_OPCODE = re.compile(r"Unsupported operand (\d+)")
RESAVE = ("re-save model.state_dict() (torch.save(model.state_dict(), 'weights.pt')) and load "
          "that")
"""The remedy for every file ``weights_only=True`` refuses."""


def load_weights_only(path: Path, map_location: torch.device | str = "cpu", *,
                      safe_globals: Sequence[Any] = (), opened: BinaryIO | None = None) -> Any:
    """``torch.load(path, weights_only=True)``: robustlab's one torch.load, with one-line errors.

    Every checkpoint, state dict and pretrained weights file is read here. A file that needs
    more than tensors and plain containers (an ``argparse.Namespace`` saved beside the weights,
    a pickle that calls ``os.system``) is refused with the class it asked for and the remedy
    (``RESAVE``), not torch's hint about the default of ``weights_only`` in PyTorch 2.6, which
    would advise running the file's code. torch's warnings about the pickle are not shown.
    ``opened``, when given, is read instead of opening ``path`` again (the descriptor whose
    bytes were hashed).

    Raises:
        UnsafeCheckpoint: the file asks for something else than tensors and containers.
        ValueError: the file is not a readable checkpoint (truncated, corrupt, not torch's).
    """
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(safe_globals)):
            warnings.simplefilter("ignore")
            return torch.load(path if opened is None else opened, map_location=map_location,
                              weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or unsafe file
        text = str(exc)
        found = _WANTED_GLOBAL.search(text)
        wanted = found.group(1) if found else None
        if wanted is None and "Weights only load failed" in text:
            wanted = first_global(path, opened)  # torch stopped before it: read the opcodes
        if wanted is not None:
            raise UnsafeCheckpoint(
                f"{path} holds a {wanted} object, which weights_only=True refuses to "
                f"unpickle (nothing in the file was run): {RESAVE}") from None
        if (opcode := _OPCODE.search(text)) is not None or "Weights only load failed" in text:
            what = f"pickle opcode {opcode.group(1)}" if opcode else "something"
            raise UnsafeCheckpoint(
                f"{path} asks for {what} beyond tensors and plain containers, which "
                f"weights_only=True refuses to unpickle (nothing in the file was run): "
                f"{RESAVE}") from None
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise ValueError(f"{path} is not a readable checkpoint "
                         f"({type(exc).__name__}: {first})") from None


SCANNED_OPCODES = 100_000
"""How far ``first_global`` reads a raw pickle's opcodes for the class it asks for."""


def first_global(path: Path, opened: BinaryIO | None = None) -> str | None:
    """The first class or function a raw pickle file imports (``GLOBAL``/``STACK_GLOBAL``).

    For the message only, when torch's weights-only unpickler stopped before naming one (a
    protocol-4 pickle's ``FRAME``): the opcodes are listed by ``pickletools.genops``, which
    never runs or imports anything.
    """
    strings: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            handle = opened if opened is not None else stack.enter_context(path.open("rb"))
            handle.seek(0)
            for count, (opcode, argument, _) in enumerate(pickletools.genops(handle)):
                if count > SCANNED_OPCODES:
                    return None
                if opcode.name == "GLOBAL" and isinstance(argument, str):
                    return argument.replace(" ", ".")
                if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
                if isinstance(argument, str) and "UNICODE" in opcode.name:
                    strings.append(argument)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, struct.error, UnicodeError):
        return None
    return None
