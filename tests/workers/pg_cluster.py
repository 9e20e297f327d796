"""A throwaway PostgreSQL cluster that a test may stop and start: never the shared server.

``initdb`` into a temporary folder, a spare port, ``pg_ctl start``/``stop``. Under root the
binaries run as the ``postgres`` user (initdb refuses root). The cluster is the only one a
database-outage test may take away: the rest of the suite shares the server at 5432.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.workers.helpers import closed_port


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    """A PostgreSQL cluster on 127.0.0.1:``port`` with a database ``robustlab``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="robustlab-pg-"))
        self.data = self.folder / "data"
        self.port = closed_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--no-sync")
        self.start()
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                 "robustlab")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/robustlab"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=40")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                 "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: every connection is cut)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        subprocess.run([*self._as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _pg(self, program: str, *args: str) -> None:
        result = subprocess.run([*self._as_postgres, str(self.bindir / program), *args],
                                capture_output=True, text=True, timeout=120, cwd=self.folder)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): "
                               f"{result.stderr.strip() or result.stdout.strip()}")
