"""The ``robustlab`` command (click), one module per command group.

Exit codes: 0 success; 1 a run failed; 2 bad input (an invalid spec, missing data or
checkpoint, an out-of-date database, an unknown run). Errors are one line on stderr, never a
traceback (set ``ROBUSTLAB_DEBUG=1`` to see one).

``service.cli.app`` holds the group and the one list of commands; ``service.cli.common`` the
helpers every command shares. The entry point ``robustlab = "service.cli:main"`` and
``python -m service.cli`` both land on ``main``.
"""

from service.cli.app import COMMAND_GROUPS, main

__all__ = ["COMMAND_GROUPS", "main"]
