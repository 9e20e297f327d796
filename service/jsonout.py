"""JSON that every parser reads: no ``NaN``, ``Infinity`` or ``-Infinity`` tokens.

Python's ``json.dumps`` writes non-finite floats as those tokens by default, which is not JSON
(RFC 8259): ``jq``, JavaScript's ``JSON.parse`` and PostgreSQL's ``json`` type refuse them. Spec
numbers are finite since validation refuses the rest, but results and stored rows may still
hold a NaN (an accuracy of an empty split, a row written before the limits), so every
``--format json`` output goes through ``dumps``: a non-finite float becomes ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts, lists, tuples) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``value``; objects JSON does not know are written as ``str()``."""
    return json.dumps(finite_or_none(value), indent=indent, default=str, allow_nan=False)
