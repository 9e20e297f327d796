"""``dashboard``: serve the Streamlit app (a child process; Streamlit is not imported here).

``dashboard.launch`` checks the database through ``service.store.queries``, which imports
pandas (over a second on a busy 2-core machine), so it is imported inside the command: every
other ``robustlab`` command would otherwise pay for it at start-up.
"""

from __future__ import annotations

import click

from service.cli.common import UserError

LOOPBACK = "127.0.0.1"
"""The default address (``dashboard.launch.LOOPBACK``; a test keeps the two equal)."""


@click.command()
@click.option("--host", default=LOOPBACK, show_default=True,
              help="Address to listen on; any non-loopback address needs OIDC login configured "
                   "(docs/security.md).")
@click.option("--port", default=8501, show_default=True, help="Port to serve on.")
def dashboard(host: str, port: int) -> None:
    """Start the Streamlit dashboard over ROBUSTLAB_DATABASE_URL and the artifact directory."""
    from dashboard.launch import LaunchRefused, launch  # pandas: only for this command

    try:
        code = launch(port, host=host)
    except LaunchRefused as exc:
        raise UserError(str(exc)) from None
    raise SystemExit(code)


COMMANDS: list[click.Command] = [dashboard]
