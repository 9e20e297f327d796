"""Start the dashboard: ``robustlab dashboard [--port N]`` or ``python -m dashboard.launch``.

Streamlit runs as a child process in the current directory, so relative settings
(``sqlite:///robustlab.db``, ``artifacts/``) mean the same as for every other command. Usage
statistics are off: the dashboard must not try to reach the internet.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

APP = Path(__file__).resolve().with_name("app.py")


def streamlit_command(port: int = 8501, *, headless: bool = True,
                      extra_args: Sequence[str] = ()) -> list[str]:
    """The ``python -m streamlit run`` command line that serves the dashboard on ``port``."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        *extra_args,
    ]


def launch(port: int = 8501, *, headless: bool = True, extra_args: Sequence[str] = ()) -> int:
    """Serve the dashboard until Streamlit exits; returns its exit code."""
    return subprocess.call(streamlit_command(port, headless=headless, extra_args=extra_args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.launch", description=__doc__)
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--browser", action="store_true", help="Open a browser tab (not headless).")
    args, extra = parser.parse_known_args(argv)
    return launch(args.port, headless=not args.browser, extra_args=extra)


if __name__ == "__main__":
    sys.exit(main())
