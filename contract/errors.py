"""The refusal every layer shares: an input robustlab will not use, said in one line.

The science raises subclasses of ``Refusal`` for a user's input it refuses (a malformed
dataset, an unsafe checkpoint, weights that do not fit, a model that cannot be built). The
plumbing then records the run as failed with that one line, and no traceback: the line is
the whole story, and it names the file and the fix.
"""

from __future__ import annotations


class Refusal(Exception):
    """An input refused; ``str(exc)`` is the one line to show and record."""
