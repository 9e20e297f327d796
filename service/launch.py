"""One run across many processes: launch ``torchrun`` and settle what its ranks leave behind.

``robustlab run SPEC --nproc-per-node N`` (and ``resume``, and a worker started with
``--nproc-per-node`` or ``--gpus``) records the runs here, in the launching process, then
starts N processes per node through PyTorch's own launcher (``torch.distributed.run``,
in-process, so a rank's failure arrives as ``ChildFailedError`` with its rank and reason).
Each process runs ``python -m service.rank``: rank 0 executes the run and records it; the
others compute their shards and record nothing (``service.rank``).

The number of processes is an execution setting, not part of the experiment: the spec and
its hash are the same at every world size. The world size, the number of nodes and the
backend go into the run's provenance.

Several machines: every node runs the same command with ``--nnodes M --node-rank K
--rdzv-endpoint HOST:PORT`` (node 0's address). Node 0 records the runs; the others record
nothing and learn the run ids from rank 0. Ranks are fixed by node rank (rank = K * N +
local rank), so node 0 holds rank 0 (torchrun's static rendezvous over its c10d store).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from contract.status import RunStatus
from service.store.entities import RunInfo
from service.store.repository import Store

log = logging.getLogger(__name__)

NPROC_ENV = "ROBUSTLAB_NPROC_PER_NODE"
"""The default of ``--nproc-per-node`` (1: the run executes in the launching process)."""
BACKENDS = ("gloo", "nccl")
EXIT_RUN_ENDED = 3
"""Rank 0's exit code when its run ended without succeeding (the run's status says how):
torchrun then stops the other ranks wherever they wait (``service.rank``)."""


@dataclass(frozen=True)
class Launch:
    """How many processes a run uses, where, and how they talk (never part of a spec)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    """HOST:PORT of node 0 (several nodes); one node picks a free local port itself."""
    backend: str | None = None
    """"gloo" or "nccl"; default nccl when the run uses CUDA, gloo otherwise."""
    sync_batchnorm: bool = True
    gpus: tuple[int, ...] = ()
    """CUDA devices of this node (``CUDA_VISIBLE_DEVICES``); empty: all of them."""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node * self.nnodes > 1

    @property
    def records(self) -> bool:
        """Whether this node records runs (node 0)."""
        return self.node_rank == 0

    def check(self) -> Launch:
        """This launch, or ``ValueError`` saying in one line what is wrong with it."""
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise ValueError("--nproc-per-node and --nnodes must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"--node-rank must be in [0, {self.nnodes - 1}] with --nnodes "
                             f"{self.nnodes}, got {self.node_rank}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("several nodes need --rdzv-endpoint HOST:PORT (node 0's address)")
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"--rdzv-endpoint must be HOST:PORT, got {self.rdzv_endpoint!r}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got "
                             f"{self.backend!r}")
        return self


def nproc_default() -> int:
    """``ROBUSTLAB_NPROC_PER_NODE``, or 1."""
    value = os.environ.get(NPROC_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{NPROC_ENV} must be a whole number >= 1, got {value!r}")
    return int(value)


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """``"0,1,2,3"`` -> (0, 1, 2, 3); ``ValueError`` in one line otherwise."""
    if not text:
        return ()
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"--gpus must be distinct device numbers like 0,1,2,3, got {text!r}")
    return tuple(int(part) for part in parts)


def backend_for(device: str, launch: Launch) -> str:
    """The process group backend: the chosen one, else nccl for CUDA and gloo otherwise."""
    if launch.backend is not None:
        return launch.backend
    import torch  # the launching process runs torch anyway

    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if wants_cuda else "gloo"


def torchrun_arguments(launch: Launch, run_ids: Sequence[str], *, device: str | None,
                       backend: str) -> list[str]:
    """The ``torch.distributed.run`` command line that starts this node's processes."""
    args = ["--nproc-per-node", str(launch.nproc_per_node), "--nnodes", str(launch.nnodes),
            "--max-restarts", "0", "--monitor-interval", "0.2"]
    if launch.nnodes == 1 and launch.rdzv_endpoint is None:
        args += ["--standalone"]
    else:
        host, _, port = (launch.rdzv_endpoint or "").rpartition(":")
        args += ["--rdzv-backend", "static", "--node-rank", str(launch.node_rank),
                 "--master-addr", host, "--master-port", port]
    args += ["-m", "service.rank", "--backend", backend, "--nnodes", str(launch.nnodes)]
    if run_ids:
        args += ["--runs", ",".join(run_ids)]
    if device is not None:
        args += ["--device", device]
    if not launch.sync_batchnorm:
        args += ["--no-sync-batchnorm"]
    return args


@dataclass(frozen=True)
class Outcome:
    """What a launch ended with: the runs in their end states and, if it failed, why."""

    runs: list[RunInfo]
    failure: str | None = None


def launch_runs(store: Store, run_ids: Sequence[str], launch: Launch, *,
                device: str | None = None,
                on_progress: Callable[[str, float, str], None] | None = None) -> Outcome:
    """Execute ``run_ids`` (node 0; none on other nodes) on this node's processes, in order.

    Returns when every process has ended. A rank that died ends the whole launch within
    seconds (torchrun stops the others); a run it leaves 'running' is then marked failed with
    the rank and the reason, and ``robustlab resume`` continues it from its last checkpoint.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    runs = [store.get_run(run_id) for run_id in run_ids] if launch.records else []
    requested = device or (runs[0].resolved_spec.get("device", "auto") if runs else "auto")
    backend = backend_for(requested, launch)
    argv = torchrun_arguments(launch, [r.id for r in runs], device=device, backend=backend)
    failure: str | None = None
    first_rank: int | None = None
    with _environment(launch), _progress_polling(store, [r.id for r in runs], on_progress):
        try:
            run(parse_args(argv))
        except ChildFailedError as exc:
            first_rank, failure = describe_failure(exc.failures)
        except Exception as exc:  # the agent itself (rendezvous, a signal): one line
            failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
    ended = [_settle(store, r.id, failure, blame_peer=first_rank not in (None, 0))
             for r in runs]
    return Outcome(ended, failure)


def describe_failure(failures: dict[int, Any]) -> tuple[int, str]:
    """The rank that failed first, and one line saying how (a signal, an exit code, its
    error)."""
    # Two exits are consequences, never causes: rank 0 leaving with EXIT_RUN_ENDED (its run
    # already ended, failed or cancelled, and says why), and SIGTERM, which torchrun sends the
    # surviving ranks once one failed (and records as failures too). Failures are stamped in
    # whole seconds when torchrun notices them, so ties are common: the cause is looked for
    # first, the time only breaks ties between causes.
    rank, first = min(failures.items(), key=lambda item: (
        item[1].exitcode == EXIT_RUN_ENDED, item[1].exitcode == -signal.SIGTERM,
        item[1].timestamp, item[0]))
    how = (f"was killed by {first.signal_name()}" if first.exitcode < 0
           else f"exited with code {first.exitcode}")
    message = first.message if isinstance(first.message, str) else ""
    if message.startswith("To enable traceback") or message.startswith("Signal "):
        message = ""
    return rank, f"rank {rank} {how}" + (f": {message.splitlines()[0]}" if message else "")


def _settle(store: Store, run_id: str, failure: str | None, *, blame_peer: bool) -> RunInfo:
    """The run in its end state: one still 'running' after every rank ended lost its process
    (a rank killed, or the launch stopped) and is marked failed with why. When another rank
    failed first (``blame_peer``), rank 0's own error (a broken collective) is only the echo:
    the run's error names the rank that failed."""
    run = store.get_run(run_id)
    resume = f"`robustlab resume {run_id}` continues it from its last checkpoint"
    if run.status in (RunStatus.RUNNING, RunStatus.QUEUED):
        reason = failure or "the distributed launch ended before the run did"
        run = store.finish_run(run_id, RunStatus.FAILED, error=f"{reason}; {resume}")
    elif run.status == RunStatus.FAILED and blame_peer and failure:
        echo = (run.error or "").strip().splitlines()[0] if run.error else ""
        run = store.finish_run(run_id, RunStatus.FAILED,
                               error=f"{failure}; {resume} (then rank 0: {echo})")
    return run


@contextmanager
def _environment(launch: Launch) -> Iterator[None]:
    """This node's devices and threads for the ranks, restored afterwards."""
    saved = dict(os.environ)
    if launch.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, launch.gpus))
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // launch.nproc_per_node)))
    os.environ.update(launch.env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _progress_polling(store: Store, run_ids: Sequence[str],
                      on_progress: Callable[[str, float, str], None] | None) -> Iterator[None]:
    """Feed ``on_progress`` from the store while the ranks run (rank 0 writes progress)."""
    if on_progress is None or not run_ids:
        yield
        return
    done = threading.Event()

    def poll() -> None:
        while not done.wait(1.0):
            for run_id in run_ids:
                try:
                    item = store.get_run(run_id)
                except Exception:  # noqa: BLE001 - a progress bar must never fail a run
                    continue
                if item.status == RunStatus.RUNNING:
                    on_progress(run_id, item.progress, item.stage or "")

    thread = threading.Thread(target=poll, name="robustlab-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def free_port() -> int:
    """An unused TCP port on this machine (tests and examples of several nodes on one host)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
