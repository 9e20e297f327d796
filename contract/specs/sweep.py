"""Sweep expansion and dotted-path assignment: one concrete spec per grid cell.

A spec's ``sweep`` maps dotted field paths to lists of values; its grid is their cartesian product
in the order written (the first key varies slowest). ``set_path`` is shared with ``--set``
overrides so that both address fields the same way: dots between field names, numeric indices
into lists (``evaluation.attacks.0.eps``), and ``sweep.<key>`` where the key keeps its own dots
(``sweep.adversary.eps``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from contract.specs.kinds import AnySpec

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnySpec)


@dataclass(frozen=True)
class Cell:
    """One grid cell: its position in the grid, its sweep values, and its concrete spec."""

    index: int
    params: dict[str, Any]
    """Sweep key -> the value as validated (``8/255`` arrives as a float), JSON-compatible."""
    spec: AnySpec
    """The concrete spec of this cell; its ``sweep`` is empty."""


def split_path(dotted: str) -> list[str]:
    """The parts of a dotted path; ``sweep.<key>`` is two parts, the key keeping its dots."""
    if dotted.startswith("sweep.") and len(dotted) > len("sweep."):
        return ["sweep", dotted[len("sweep.") :]]
    parts = dotted.split(".")
    if not all(parts):
        raise ValueError(f"{dotted!r} is not a dotted field path (e.g. distribution.p)")
    return parts


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b]... = value`` for ``dotted`` = ``a.b...``, creating missing mappings.

    A missing or null intermediate becomes an empty mapping, so ``--set dataset.name=mnist``
    works on a spec that has no ``dataset`` yet. Raises ``ValueError`` with a message fit for a
    user when the path runs through a scalar or past the end of a list.
    """
    parts = split_path(dotted)
    container: Any = data
    for depth, part in enumerate(parts[:-1]):
        container = _descend(container, part, parts[: depth + 1])
    if isinstance(container, list):
        container[_list_index(container, parts[-1], parts[:-1])] = value
    else:
        container[parts[-1]] = value


def get_path(data: Any, dotted: str) -> Any:
    """The value at ``dotted`` in nested mappings and lists; ``KeyError``/``IndexError`` if none."""
    value = data
    for part in split_path(dotted):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _descend(container: dict[str, Any] | list[Any], part: str, prefix: list[str]) -> Any:
    """The mapping or list at ``part`` of ``container``; a missing mapping is created."""
    if isinstance(container, list):
        child = container[_list_index(container, part, prefix[:-1])]
    else:
        child = container.get(part)
        if child is None:
            child = container[part] = {}
    if not isinstance(child, dict | list):
        raise ValueError(f"{'.'.join(prefix)} is {child!r}, not a mapping")
    return child


def _list_index(items: list[Any], part: str, prefix: list[str]) -> int:
    """``part`` as an index into ``items``, which lives at ``prefix``."""
    where = ".".join(prefix)
    if not part.isdigit():
        raise ValueError(f"{where} is a list: address its items by number, e.g. {where}.0")
    index = int(part)
    if index >= len(items):
        raise ValueError(f"{where} has {len(items)} item(s): there is no item {index}")
    return index


def grid(sweep: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the sweep's values, the first key varying slowest."""
    keys = list(sweep)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.values())]


def with_params(data: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``path: value`` of ``params`` set."""
    cell = copy.deepcopy(dict(data))
    for path, value in params.items():
        set_path(cell, path, copy.deepcopy(value))
    return cell


def expand(spec: AnySpec) -> list[Cell]:
    """One concrete, validated spec per grid cell (a spec without a sweep is one cell).

    The cell is rebuilt from the fields the spec actually set (``exclude_unset``), so a sweep
    value may change a nested model's ``kind`` without the old kind's defaults getting in the way.
    """
    if not spec.sweep:
        return [Cell(0, {}, spec)]
    base = spec.model_dump(mode="json", exclude_unset=True, exclude={"sweep"})
    cells = []
    for index, params in enumerate(grid(spec.sweep)):
        concrete = _ADAPTER.validate_python(with_params(base, params))
        resolved = concrete.model_dump(mode="json")
        cells.append(Cell(index, {path: get_path(resolved, path) for path in params}, concrete))
    return cells
