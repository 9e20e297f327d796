"""The fields every experiment kind has: name, description, seed, device and sweep."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from contract.limits import get_limits
from contract.specs.values import Count, Strict


class SpecBase(Strict):
    """Fields every experiment kind has."""

    title: ClassVar[str] = ""
    """What the kind does, for help texts."""
    runner: ClassVar[str] = ""
    """``module:function`` of the science's ``run(spec, ctx)`` (imported when a run executes)."""

    name: str = Field(
        description="Experiment name: groups runs in the database (letters, digits, '_', '-', '.').",
        min_length=1,
        max_length=120,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
    )
    description: str = Field("", description="Free text shown in the dashboard and the report.")
    seed: Count = Field(0, ge=0, description="Seed for every random number generator of the run.")
    device: str = Field(
        "auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."
    )
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted field paths mapped to lists of values: one run per grid cell.",
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value

    @field_validator("sweep")
    @classmethod
    def _check_sweep(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", path):
                raise ValueError(f"sweep key {path!r} is not a dotted field path")
            if path.split(".")[0] in {"name", "kind", "sweep"}:
                raise ValueError(f"sweep cannot vary {path!r}")
            if not values:
                raise ValueError(f"sweep over {path!r} has no values")
        limit = get_limits().max_sweep_cells
        cells = math.prod(len(values) for values in value.values())  # before any expansion
        if cells > limit:
            sizes = " x ".join(str(len(values)) for values in value.values())
            raise ValueError(f"the sweep has {cells} cells ({sizes}), more than "
                             f"{limit} (ROBUSTLAB_MAX_SWEEP_CELLS)")
        return value
