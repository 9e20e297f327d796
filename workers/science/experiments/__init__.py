"""Experiment kinds: one module per spec kind, each with ``run(spec, ctx) -> None``.

Modules are imported on demand so that, say, a theory run never imports torchvision models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from workers.science.records import RunContext

ExperimentFn = Callable[[Any, RunContext], None]


def get_experiment(kind: str) -> ExperimentFn:
    """The ``run`` function of the experiment module named after ``kind``."""
    try:
        module = importlib.import_module(f"{__name__}.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{kind}":
            raise ValueError(f"no experiment module for spec kind {kind!r}") from exc
        raise
    return module.run
