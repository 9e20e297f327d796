"""Entry points and lazy references: how registries name code without importing it.

A registry entry names its implementation as ``"package.module:attribute"``. The name is known
(and a spec validated) from metadata alone; ``load_object`` imports the module only when a run
needs it. References come from robustlab's own tables and from installed distributions' entry
points, never from a spec: a spec cannot make robustlab import anything.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any


def entry_points(group: str) -> dict[str, str]:
    """Installed entry points of ``group``: name -> ``module:attribute`` (nothing imported)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}


def load_object(reference: str) -> Any:
    """The object ``"package.module:attribute"`` names (imports the module)."""
    module_name, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else ():
        target = getattr(target, part)
    return target
