"""``dashboard``: serve the Streamlit app through ``python -m dashboard.launch``.

The dashboard is the layer above the CLI (import-linter's layers), so the command runs its
launcher as a program instead of importing it: the launcher checks the settings (OIDC, the SQL
box's reader role), refuses in one line with exit code 2, or serves Streamlit until it exits.
``os.execv`` hands this process over to it, so signals reach it directly.
"""

from __future__ import annotations

import os
import sys

import click

LOOPBACK = "127.0.0.1"
"""The default address (``dashboard.launch.LOOPBACK``; a test keeps the two equal)."""


@click.command()
@click.option("--host", default=LOOPBACK, show_default=True,
              help="Address to listen on; any non-loopback address needs OIDC login configured "
                   "(docs/security.md).")
@click.option("--port", default=8501, show_default=True, help="Port to serve on.")
def dashboard(host: str, port: int) -> None:
    """Start the Streamlit dashboard over ROBUSTLAB_DATABASE_URL and the artifact directory."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "dashboard.launch", "--host", host,
                              "--port", str(port)])


COMMANDS: list[click.Command] = [dashboard]
