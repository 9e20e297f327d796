"""Spec limits: bounds every spec is validated against, read from ``ROBUSTLAB_*``.

They belong to a deployment, not to an experiment: they are not part of any spec or its hash.
They are checked when a spec is validated (CLI, dashboard, queue), so an absurd value is one
line and exit 2 instead of a MemoryError, a hang or a database error at run time.
``service.settings.Settings`` extends this class with the rest of the deployment settings.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.errors import Refusal


class SpecLimits(BaseSettings):
    """The limits a spec must stay within; raise them per deployment."""

    model_config = SettingsConfigDict(env_prefix="ROBUSTLAB_", extra="ignore")

    max_spec_bytes: int = Field(
        1 << 20, ge=1, description="Largest spec file or text read, in bytes (1 MiB); anything "
        "that is not a regular file (/dev/zero, a FIFO, a socket) is refused without reading."
    )
    max_yaml_depth: int = Field(
        64, ge=2, description="Deepest nesting of mappings and lists in a spec's YAML, checked "
        "on the event stream before the recursive composer could overflow the stack."
    )
    max_yaml_aliases: int = Field(
        100, ge=0, description="YAML aliases (*name) a spec may use."
    )
    max_yaml_nodes: int = Field(
        50_000, ge=1, description="Values in a spec's YAML once every alias is expanded "
        "(a 'billion laughs' document is a few hundred bytes with 10**9 values)."
    )
    max_list_items: int = Field(
        10_000, ge=1, description="Items of any one list in a spec (sweep values included)."
    )
    max_sweep_cells: int = Field(
        10_000, ge=1, description="Grid cells (runs) one spec's sweep may expand to; checked "
        "from the list lengths before anything is expanded."
    )
    max_examples: int = Field(
        10_000_000, ge=1, description="Largest example count a spec may ask for: theory "
        "n_train/n_test, dataset and evaluation subsets, images visualised or measured."
    )
    max_features: int = Field(
        1_000_000, ge=1, description="Largest feature dimension d of the theory's distribution."
    )
    max_batch_size: int = Field(65_536, ge=1, description="Largest batch size in a spec.")
    max_epochs: int = Field(
        100_000, ge=1, description="Largest epoch-like count: epochs (theory and linear_features "
        "count full-batch steps), milestones, ramp and checkpoint intervals."
    )
    max_steps: int = Field(
        100_000, ge=1, description="Largest attack iteration count (steps of PGD, the training "
        "adversary, large-eps attacks, overfitting checks) and interpolation points."
    )
    max_restarts: int = Field(1_000, ge=1, description="Largest number of attack restarts.")
    max_queries: int = Field(
        1_000_000, ge=1, description="Largest query budget of a black-box attack (Square)."
    )
    max_theory_values: int = Field(
        1_000_000_000, ge=1, description="Largest theory sample: (n_train + n_test) x (d + 1) "
        "float32 values (10**9: 4 GB)."
    )
    max_image_size: int = Field(
        4_096, ge=1, description="Largest image side an image folder may be resized to."
    )




class SettingsError(Refusal):
    """A ``ROBUSTLAB_*`` variable that cannot be read as its setting: one line naming it."""


S = TypeVar("S", bound=BaseSettings)


def read_settings(cls: type[S]) -> S:
    """``cls()`` read from the environment, or ``SettingsError`` naming the first variable
    that does not parse or is out of range (never pydantic's multi-line report)."""
    try:
        return cls()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        prefix = str(cls.model_config.get("env_prefix") or "")
        name = f"{prefix}{field}".upper()
        raise SettingsError(f"{name}={error.get('input')!r}: {error['msg']}") from None


@lru_cache(maxsize=1)
def get_limits() -> SpecLimits:
    """The limits in force (cached: call ``get_limits.cache_clear()`` after changing them)."""
    return read_settings(SpecLimits)
