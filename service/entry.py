"""The ``robustlab`` console script: the click group of ``service.cli``, with settings that
cannot be read said in one line.

The spec language checks its limits (``ROBUSTLAB_MAX_*``) while its modules are imported (the
models' defaults are validated), so an unreadable ``ROBUSTLAB_*`` variable can fail before any
command runs, where ``friendly_errors`` cannot see it. Importing the CLI here, inside the
``try``, turns that into the same one line and exit 2 as every other bad input.
"""

from __future__ import annotations

import os
import sys

from contract.limits import SettingsError

EXIT_BAD_INPUT = 2


def main() -> None:
    """``robustlab ...``: run the command line, or say which setting is unreadable."""
    try:
        from service.cli.app import main as command

        command()
    except SettingsError as exc:
        if os.environ.get("ROBUSTLAB_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
