"""Checks of a spec against this machine, before anything is recorded.

``robustlab validate`` checks a spec itself; whether its files exist here, its run ids are in
this database and its device is on this machine is another question, asked here:

- a local file or folder that does not exist (``dataset.root``, checkpoint files);
- a ``source.run`` (or a visualised model's ``run``) that this database does not know;
- a ``device`` this machine does not have.

``validate`` prints them as warnings (``--here``: errors); ``run`` refuses them in one line
before recording anything; a worker refuses them for a submitted run, which then fails with
that line. Torch is imported only when a spec names a CUDA or MPS device.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contract.specs.sweep import expand
from service.store.repository import RunNotFound, Store, StoreError

_CUDA = re.compile(r"cuda(?::(\d+))?")


@dataclass(frozen=True)
class Finding:
    """One thing this machine lacks for a spec: the field, its value, and what is wrong."""

    field: str
    value: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _walk(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every field of a spec, nested models and lists included."""
    if isinstance(model, BaseModel):
        for name in type(model).model_fields:
            value = getattr(model, name)
            path = f"{prefix}{name}"
            yield path, value
            yield from _walk(value, f"{path}.")
    elif isinstance(model, list | tuple):
        for index, item in enumerate(model):
            yield from _walk(item, f"{prefix[:-1]}.{index}.")


def missing_paths(spec: BaseModel) -> list[Finding]:
    """Dataset roots and checkpoint files the spec names that do not exist here."""
    found = []
    for path, value in _walk(spec):
        leaf = path.rsplit(".", 1)[-1]
        if value is None or leaf not in ("root", "checkpoint") or not isinstance(value, str):
            continue
        if not Path(value).expanduser().exists():
            what = "dataset root" if leaf == "root" else "checkpoint file"
            found.append(Finding(path, value, f"{value} does not exist (the {what} is read on "
                                 "the machine that runs it)"))
    return found


def unknown_runs(spec: BaseModel, store: Store) -> list[Finding]:
    """Run ids the spec names (``source.run``, a visualised model's ``run``) not in ``store``."""
    found = []
    for path, value in _walk(spec):
        if path.rsplit(".", 1)[-1] != "run" or not isinstance(value, str):
            continue
        try:
            store.get_run(value)
        except RunNotFound:
            found.append(Finding(path, value, f"no run with id {value!r} in this database "
                                 "(`robustlab runs` lists them)"))
        except StoreError as exc:  # an ambiguous prefix
            found.append(Finding(path, value, str(exc)))
    return found


def missing_device(device: str) -> Finding | None:
    """The spec's ``device`` if this machine does not have it."""
    if device in ("auto", "cpu"):
        return None
    import torch  # only for specs that name an accelerator

    match = _CUDA.fullmatch(device)
    if match is not None:
        if not torch.cuda.is_available():
            return Finding("device", device, f"{device!r}: this machine has no CUDA device "
                           "(use device: auto or cpu, or run it on a GPU worker)")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            return Finding("device", device, f"{device!r}: this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s)")
    elif device == "mps" and not torch.backends.mps.is_available():
        return Finding("device", device, "'mps': this machine has no Apple GPU")
    return None


def names_runs(spec: BaseModel) -> bool:
    """Whether the spec names run ids (only then is the database needed)."""
    return any(path.rsplit(".", 1)[-1] == "run" and isinstance(value, str)
               for cell in expand(spec) for path, value in _walk(cell.spec))  # type: ignore[arg-type]


def preflight(spec: BaseModel, store: Store | None, *,
              device: str | None = None) -> list[Finding]:
    """Everything this machine lacks for any cell of ``spec`` (each finding once); ``device``
    overrides the spec's (``--device``)."""
    cells = [cell.spec for cell in expand(spec)]  # type: ignore[arg-type]
    found: dict[tuple[str, str], Finding] = {}
    for cell in cells:
        findings = missing_paths(cell) + (unknown_runs(cell, store) if store is not None else [])
        device_finding = missing_device(device or str(getattr(cell, "device", "auto")))
        device_found = [device_finding] if device_finding is not None else []
        for finding in [*findings, *device_found]:
            found.setdefault((finding.field, finding.value), finding)
    return list(found.values())
