"""The value types of the spec language: numbers, bounded counts, norms and the base model.

``8/255`` and ``1e-3`` are numbers (parsed without eval); whole numbers refuse YAML booleans;
counts are bounded by the deployment's ``contract.limits``; every model forbids unknown keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from contract.limits import get_limits

_FRACTION = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def parse_number(value: Any) -> Any:
    """Accept ``8/255`` and ``1e-3`` (which PyYAML's safe loader reads as strings) without eval."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number")
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if match:
            denominator = float(match.group(2))
            if denominator == 0:
                raise ValueError("division by zero")
            return float(match.group(1)) / denominator
        if _NUMBER.match(value):
            return float(value)
        raise ValueError(f"{value!r} is not a number (write e.g. 0.3, 8/255 or 1e-3)")
    return value


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a whole number")
    return value


Number = Annotated[float, BeforeValidator(parse_number)]
"""A float that may be written as ``8/255`` or ``1e-3`` in YAML."""
Eps = Annotated[float, BeforeValidator(parse_number), Field(ge=0)]
"""A perturbation radius in pixel space ([0, 1] images) or feature space (theory)."""
PositiveNumber = Annotated[float, BeforeValidator(parse_number), Field(gt=0)]
MAX_INT64 = 2**63 - 1
"""Every whole number of a spec fits a signed 64-bit integer (the store's BIGINT, torch's seed)."""

Count = Annotated[int, BeforeValidator(_not_boolean), Field(le=MAX_INT64)]
"""A whole number. YAML reads ``yes``/``true`` as a boolean, which pydantic's lax mode would take
for 1 (``epochs: yes`` training one epoch): refused here. At most 2**63 - 1."""


def _at_most(setting: str) -> AfterValidator:
    """An upper bound read from ``Settings.<setting>`` when a spec is validated.

    Read at validation time, not at import, so a deployment sets ``ROBUSTLAB_<SETTING>`` and
    the schema stays the same everywhere. To bound a new field, annotate it with one of the
    aliases below, or ``Annotated[Count, _at_most("max_...")]`` after adding the setting.
    """
    variable = f"ROBUSTLAB_{setting.upper()}"

    def check(value: int) -> int:
        limit: int = getattr(get_limits(), setting)
        if value > limit:
            raise ValueError(f"must be <= {limit} (the limit {variable}; got {value})")
        return value

    return AfterValidator(check)


ExampleCount = Annotated[Count, _at_most("max_examples")]
"""How many examples (samples, subsets, images); at most ``ROBUSTLAB_MAX_EXAMPLES``."""
FeatureCount = Annotated[Count, _at_most("max_features")]
BatchSize = Annotated[Count, _at_most("max_batch_size")]
EpochCount = Annotated[Count, _at_most("max_epochs")]
"""Epochs, full-batch steps and epoch intervals; at most ``ROBUSTLAB_MAX_EPOCHS``."""
StepCount = Annotated[Count, _at_most("max_steps")]
"""Attack iterations; at most ``ROBUSTLAB_MAX_STEPS``."""
RestartCount = Annotated[Count, _at_most("max_restarts")]
QueryCount = Annotated[Count, _at_most("max_queries")]
"""A black-box attack's query budget; at most ``ROBUSTLAB_MAX_QUERIES``."""
ImageSize = Annotated[Count, _at_most("max_image_size")]

NormName = Literal["linf", "l2"]
"""The norms of ``contract.catalog.NORMS`` (checked at import of ``contract.catalog``)."""


class AddedLater:
    """Marks a field added after specs were first hashed: left out of the hash at its default.

    ``Annotated[bool, ADDED_LATER] = False``: a spec that does not use the field keeps the hash
    it had before the field existed, so its cached cells are still found
    (``contract.specs.hashing``).
    """

    def __repr__(self) -> str:
        return "ADDED_LATER"


ADDED_LATER = AddedLater()


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)
    """``allow_inf_nan=False``: every float of every spec is finite (``.inf``, ``1e400``, ``.nan``
    are refused), so no run fails later on a database or JSON that cannot hold them."""


