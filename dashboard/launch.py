"""Start the dashboard: ``robustlab dashboard [--host ADDR] [--port N]`` or ``python -m dashboard.launch``.

Streamlit runs as a child process in the current directory, so relative settings
(``sqlite:///robustlab.db``, ``artifacts/``) mean the same as for every other command. Usage
statistics are off: the dashboard must not try to reach the internet.

Who can reach it (docs/security.md):

- It binds 127.0.0.1 unless ``--host`` says otherwise; Streamlit's own default is every
  interface, IPv4 and IPv6.
- Any other address needs OIDC login configured (``ROBUSTLAB_OIDC_*`` and an allow-list, see
  ``dashboard/auth.py``), or ``ROBUSTLAB_DASHBOARD_ALLOW_UNAUTHENTICATED`` where the network
  itself keeps strangers out; otherwise ``LaunchRefused`` (the CLI exits 2 with its line).
- With OIDC, robustlab's settings are written as Streamlit's ``[auth]`` secrets file in a
  private temporary directory (mode 0600, outside the repository), removed when Streamlit exits.
- Before serving, the SQL box's connection must be able to ``SET ROLE robustlab_reader``
  (PostgreSQL, schema current): otherwise one line says what to grant.

Every Streamlit flag the deployment depends on is in ``server_flags``, in one place.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from dashboard.auth import AuthConfig, AuthMisconfigured, auth_config, is_loopback, write_secrets
from service.settings import Settings, get_settings
from service.store import queries

APP = Path(__file__).resolve().with_name("app.py")
LOOPBACK = "127.0.0.1"
MAX_UPLOAD_MB = 1
"""``server.maxUploadSize``: a spec is a small YAML file (the spec loader's own cap is 1 MiB)."""
ACCENT = "#1c83e1"
"""``theme.primaryColor``: a blue. Streamlit's default is a red, and red is what a page uses
for trouble: progress bars, chosen filters and buttons are not trouble."""


class LaunchRefused(RuntimeError):
    """The dashboard must not start as asked; the one-line message says what to configure."""


def server_flags(port: int, host: str, *, headless: bool, exposed: bool) -> list[str]:
    """Streamlit's command-line flags: address and port, privacy, and what viewers may see."""
    return [
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",            # no rerun/clear-cache/settings menu
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--server.enableXsrfProtection", "true",
        "--client.showErrorDetails", "type" if exposed else "full",  # no tracebacks to others
        "--theme.primaryColor", ACCENT,              # healthy progress is not red
    ]


def streamlit_command(port: int = 8501, *, host: str = LOOPBACK, headless: bool = True,
                      extra_args: Sequence[str] = (), secrets_file: Path | None = None,
                      exposed: bool = False) -> list[str]:
    """The ``python -m streamlit run`` command line that serves the dashboard."""
    secrets = ["--secrets.files", str(secrets_file)] if secrets_file is not None else []
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        *server_flags(port, host, headless=headless, exposed=exposed),
        *secrets,
        *extra_args,
    ]


def check_exposure(host: str, port: int, settings: Settings) -> AuthConfig | None:
    """The OIDC config to serve with, or ``LaunchRefused`` if ``host`` would be open to anyone."""
    try:
        config = auth_config(settings, port)
    except AuthMisconfigured as exc:
        raise LaunchRefused(str(exc)) from exc
    if config is None and not is_loopback(host) and not settings.dashboard_allow_unauthenticated:
        raise LaunchRefused(
            f"refusing to serve the dashboard on {host} without login: set "
            "ROBUSTLAB_OIDC_SERVER_METADATA_URL, ROBUSTLAB_OIDC_CLIENT_ID, "
            "ROBUSTLAB_OIDC_CLIENT_SECRET, ROBUSTLAB_OIDC_COOKIE_SECRET and "
            "ROBUSTLAB_DASHBOARD_MEMBERS (docs/security.md), or use --host 127.0.0.1")
    return config


def check_sql_box(settings: Settings) -> None:
    """``LaunchRefused`` if the SQL box's login cannot become the reader role.

    Skipped while the database is unreachable or not migrated (asked with the owner's URL, as
    a reader login cannot know): the pages explain those.
    """
    if not queries.database_status(settings.database_url).ready:
        return
    try:
        queries.check_reader(settings.dashboard_database_url or settings.database_url)
    except queries.ReaderUnavailable as exc:
        raise LaunchRefused(str(exc)) from exc
    except queries.QueryFailed:
        return


def launch(port: int = 8501, *, host: str = LOOPBACK, headless: bool = True,
           extra_args: Sequence[str] = ()) -> int:
    """Serve the dashboard until Streamlit exits; returns its exit code.

    Raises ``LaunchRefused`` before starting anything when the settings do not allow it.
    """
    settings = get_settings()
    config = check_exposure(host, port, settings)
    check_sql_box(settings)
    secrets = write_secrets(config) if config is not None else None
    exposed = config is not None or not is_loopback(host)
    command = streamlit_command(port, host=host, headless=headless, extra_args=extra_args,
                                secrets_file=secrets, exposed=exposed)
    try:
        return _serve(command)
    finally:
        if secrets is not None:
            shutil.rmtree(secrets.parent, ignore_errors=True)


def _serve(command: list[str]) -> int:
    """Run Streamlit; SIGTERM is passed on and waited for, so the secrets file is removed."""
    process = subprocess.Popen(command)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.launch", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--browser", action="store_true", help="Open a browser tab (not headless).")
    args, extra = parser.parse_known_args(argv)
    try:
        return launch(args.port, host=args.host, headless=not args.browser, extra_args=extra)
    except LaunchRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
