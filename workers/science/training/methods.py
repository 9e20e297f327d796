"""Training methods by name: ``adversary.method`` -> the function of one batch.

The names and where each function lives are ``contract.catalog.training_methods()`` (the
built-ins and installed ``robustlab.training_methods`` entry points); a method's module is
imported the first time a run trains with it. Adding a built-in method: one module in this
package with a ``TrainingMethod`` function and one entry in the catalog's table.
"""

from __future__ import annotations

from contract.catalog import training_methods
from contract.registry import load_object
from workers.science.training.common import TrainingMethod

_LOADED: dict[str, TrainingMethod] = {}


def training_method(name: str) -> TrainingMethod:
    """The ``TrainingMethod`` registered as ``name`` (``ValueError`` naming the known ones)."""
    if name not in _LOADED:
        methods = training_methods()
        if name not in methods:
            raise ValueError(f"unknown training method {name!r}; known: {', '.join(methods)}")
        function = load_object(methods[name].implementation)
        if not callable(function):
            raise TypeError(f"training method {name!r}: {methods[name].implementation} is not "
                            "callable")
        _LOADED[name] = function
    return _LOADED[name]
