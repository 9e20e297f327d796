"""``dashboard``: serve the Streamlit app (a child process; Streamlit is not imported here)."""

from __future__ import annotations

import click

from dashboard.launch import launch


@click.command()
@click.option("--port", default=8501, show_default=True, help="Port to serve on.")
def dashboard(port: int) -> None:
    """Start the Streamlit dashboard over ROBUSTLAB_DATABASE_URL and the artifact directory."""
    raise SystemExit(launch(port))


COMMANDS: list[click.Command] = [dashboard]
