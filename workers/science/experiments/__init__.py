"""Experiment kinds: one module per spec kind, each with ``run(spec, ctx) -> None``.

Each spec class names its ``runner`` (``contract.specs.kinds``); the module is imported only
when a run of that kind executes, so that, say, a theory run never imports torchvision models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contract.registry import load_object
from contract.specs.kinds import SPEC_KINDS
from workers.science.context import RunContext

ExperimentFn = Callable[[Any, RunContext], None]


def get_experiment(kind: str) -> ExperimentFn:
    """The ``run`` function of the spec kind ``kind``."""
    if kind not in SPEC_KINDS:
        raise ValueError(f"no experiment for spec kind {kind!r}; known: {', '.join(SPEC_KINDS)}")
    function: ExperimentFn = load_object(SPEC_KINDS[kind].runner)
    return function
