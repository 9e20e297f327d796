"""The ``robustlab`` command (click), one module per command group.

Exit codes: 0 success; 1 a run failed; 2 bad input (an invalid spec, missing data or
checkpoint, an out-of-date database, an unknown run). Errors are one line on stderr, never a
traceback (set ``ROBUSTLAB_DEBUG=1`` to see one).

``service.cli.app`` holds the group and the one list of commands; ``service.cli.common`` the
helpers every command shares. The entry point ``robustlab = "service.entry:main"`` and
``python -m service.cli`` both run ``main`` through ``service.entry``, which also turns a
``ROBUSTLAB_*`` variable that cannot be read into one line.
"""

from typing import Any

__all__ = ["COMMAND_GROUPS", "main"]


def __getattr__(name: str) -> Any:
    """``main`` and ``COMMAND_GROUPS`` from ``service.cli.app``, imported on first use: importing
    the package (``python -m service.cli``) must not import the spec language before
    ``service.entry`` can catch an unreadable setting."""
    if name in __all__:
        from service.cli import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
