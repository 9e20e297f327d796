"""Content hash of a normalised spec: the identity of "the same experiment".

Two specs hash the same exactly when they validate to the same values, whatever the YAML looked
like: key order, ``0.3`` versus ``3/10``, defaults omitted or written out. Left out:
``description`` (rewording the prose does not make a new experiment), and every field marked
``ADDED_LATER`` while it holds its default. The second rule is what lets the spec language
grow: a field added after specs were first hashed changes no existing spec's hash (its cached
cells are still found) until a spec actually sets it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from contract.specs.values import ADDED_LATER

_EXCLUDED = {"description"}


def _unset_later_fields(model: BaseModel) -> dict[Any, Any]:
    """A ``model_dump`` exclude mapping of the ``ADDED_LATER`` fields at their defaults, nested."""
    exclude: dict[Any, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if ADDED_LATER in info.metadata and value == info.get_default(call_default_factory=True):
            exclude[name] = True
        elif isinstance(value, BaseModel):
            inner = _unset_later_fields(value)
            if inner:
                exclude[name] = inner
        elif isinstance(value, list | tuple):
            items = {i: inner for i, item in enumerate(value) if isinstance(item, BaseModel)
                     and (inner := _unset_later_fields(item))}
            if items:
                exclude[name] = items
    return exclude


def stable_dump(model: BaseModel) -> dict[str, Any]:
    """``model_dump(mode="json")`` without the ``ADDED_LATER`` fields at their defaults: how a
    spec's values are written wherever they become part of its identity (a sweep's
    normalised values too)."""
    return model.model_dump(mode="json", exclude=_unset_later_fields(model))


def canonical_json(spec: BaseModel) -> str:
    """The spec's validated values as compact JSON with sorted keys (``description`` and the
    ``ADDED_LATER`` fields at their defaults left out)."""
    exclude: dict[Any, Any] = {key: True for key in _EXCLUDED if key in type(spec).model_fields}
    exclude.update(_unset_later_fields(spec))
    data = spec.model_dump(mode="json", exclude=exclude)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: BaseModel) -> str:
    """sha256 hex digest of ``canonical_json(spec)``."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
