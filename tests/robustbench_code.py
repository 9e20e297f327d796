"""RobustBench's own architecture modules, as the tests' yardstick (test-only dependency).

``pip install --no-deps robustbench==1.1.1`` (``make env`` does). Its package ``__init__``
imports timm, gdown and requests, which robustlab does not install; its architecture modules
import only torch. So the package is never imported: each module is loaded from its file in
the installed package directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def robustbench_architecture(name: str) -> ModuleType:
    """``robustbench.model_zoo.architectures.<name>``, loaded from its file without the package."""
    found = importlib.util.find_spec("robustbench")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("robustbench is not installed (test only): "
                           "pip install --no-deps robustbench==1.1.1, or make env")
    package = Path(list(found.submodule_search_locations)[0])
    path = package / "model_zoo" / "architectures" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"robustbench_architectures_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
