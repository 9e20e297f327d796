"""``robustlab dashboard`` as a real server for the browser tests and the screenshot script:
one way to start it, wait for it and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.dashboard.conftest import REPO
from tests.dashboard.seed import Seeded

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until Streamlit's health endpoint answers (90 s), or fail with the server's log."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the dashboard exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the dashboard did not start:\n{log.read_text()}")


@contextmanager
def serving(seeded: Seeded, workdir: Path, *, env: Mapping[str, str] | None = None,
            host: str = "127.0.0.1") -> Iterator[str]:
    """``robustlab dashboard`` over ``seeded`` on a free port, its log and run directory in
    ``workdir``, with ``env`` added to its environment; yields its base URL."""
    port = free_port()
    log = workdir / "streamlit.log"
    environment = os.environ | {"ROBUSTLAB_DATABASE_URL": seeded.url,
                                "ROBUSTLAB_ARTIFACT_DIR": str(seeded.artifact_dir),
                                "ROBUSTLAB_RUNS_DIR": str(workdir / "runs"), **(env or {})}
    command = [sys.executable, "-m", "service.cli", "dashboard", "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=REPO, env=environment, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://{host}:{port}"
        wait_healthy(base, server, log)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
