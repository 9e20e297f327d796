"""Helpers for the queue tests: real processes, real sockets, and waiting for them.

Nothing here imitates the broker, the database or a worker: ``Processes`` starts real
``robustlab`` subprocesses (each in its own process group, so a test can SIGKILL a whole worker
and teardown can always clean up), and ``TcpProxy`` sits between a worker and PostgreSQL so a
test can make the database unreachable and reachable again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
TEST_REDIS = os.environ.get("ROBUSTLAB_TEST_REDIS", "redis://127.0.0.1:6379/15")
"""A Redis database of its own, flushed by the tests."""


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def closed_port() -> int:
    """A local TCP port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def queue_length(url: str, queue: str) -> int:
    """Messages waiting on a Celery queue (Redis list named after the queue)."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


def unacked_count(url: str) -> int:
    """Messages delivered to a worker and not yet acknowledged (kombu's ``unacked`` hash)."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.hlen("unacked"))
    finally:
        client.close()


def robustlab(*args: str, env: dict[str, str], cwd: Path,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROBUSTLAB, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


class Process:
    """A ``robustlab`` subprocess in its own process group, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.args = args
        self.log = log
        with log.open("ab") as output:
            self.popen = subprocess.Popen([ROBUSTLAB, *args], env=env, cwd=cwd,
                                          stdout=output, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait for Celery's "ready." line; fail with the log if the process exits first."""

        def ready() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"robustlab {' '.join(self.args)} exited "
                                     f"{self.popen.returncode}:\n{self.output()}")
            return " ready." in self.output()

        wait_for(ready, timeout, f"robustlab {self.args[0]} to be ready")

    def children(self) -> list[int]:
        """The process ids of this process's children (Celery's pool processes)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process and every process it started (its whole session)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            self.popen.wait(timeout=30)


class Processes:
    """Every process a test started, all killed at teardown whatever happened."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.started: list[Process] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> Process:
        log = self.directory / f"{args[0]}-{len(self.started)}.log"
        process = Process(list(args), {**self.env, **(env or {})}, log, self.directory)
        self.started.append(process)
        return process

    def worker(self, *args: str, env: dict[str, str] | None = None) -> Process:
        """A ready ``robustlab worker --device cpu``."""
        process = self.start("worker", "--device", "cpu", *args, env=env)
        process.wait_ready()
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.kill_group(signal.SIGKILL)


class TcpProxy:
    """A TCP forwarder to ``target``: ``cut()`` drops every connection and refuses new ones.

    Pointing a worker's database URL at the proxy lets a test take the database away from the
    worker for a while, the way a restart or a network partition would, then give it back.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = closed_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other direction
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def theory_spec(name: str, *, seeds: int = 1, epochs: int = 20) -> str:
    """A tiny E1 spec (no data needed): runs in a second or two; ``seeds`` sweep cells."""
    sweep = f"sweep:\n  seed: {list(range(1, seeds + 1))}\n" if seeds > 1 else ""
    return (f"name: {name}\nkind: theory\ndevice: cpu\nn_train: 200\nn_test: 200\n"
            f"epochs: {epochs}\ndistribution: {{p: 0.7, d: 50, eta: 0.5}}\neps: [1.0]\n"
            f"models: [averaging, svm]\n{sweep}")


def train_spec(name: str, *, epochs: int = 5, train_subset: int = 400) -> str:
    """A small adversarial training of a linear model on real MNIST, a checkpoint per epoch.

    About a second of CPU per epoch: long enough to be killed between checkpoints.
    """
    return f"""\
name: {name}
kind: train
device: cpu
dataset: {{name: mnist, train_subset: {train_subset}, test_subset: 100}}
model: {{arch: linear}}
training:
  epochs: {epochs}
  batch_size: 10
  optimizer: {{name: adam, lr: 1e-3, weight_decay: 0}}
adversary: {{norm: linf, eps: 0.3, steps: 3, step_size: 0.1}}
evaluation:
  attacks:
    - {{kind: pgd, norm: linf, eps: 0.3, steps: 3, step_size: 0.1}}
  checks: false
checkpoint_every: 1
"""


def evaluate_spec(name: str) -> str:
    """An evaluate spec without a source: a standing evaluation fills it in per checkpoint."""
    return f"""\
name: {name}
kind: evaluate
device: cpu
dataset: {{name: mnist, test_subset: 100}}
evaluation:
  attacks:
    - {{kind: fgsm, eps: 0.1}}
  checks: false
"""
