"""``dashboard``: serve the Streamlit app (a child process; Streamlit is not imported here)."""

from __future__ import annotations

import click

from dashboard.launch import LOOPBACK, LaunchRefused, launch
from service.cli.common import UserError


@click.command()
@click.option("--host", default=LOOPBACK, show_default=True,
              help="Address to listen on; any non-loopback address needs OIDC login configured "
                   "(docs/security.md).")
@click.option("--port", default=8501, show_default=True, help="Port to serve on.")
def dashboard(host: str, port: int) -> None:
    """Start the Streamlit dashboard over ROBUSTLAB_DATABASE_URL and the artifact directory."""
    try:
        code = launch(port, host=host)
    except LaunchRefused as exc:
        raise UserError(str(exc)) from None
    raise SystemExit(code)


COMMANDS: list[click.Command] = [dashboard]
