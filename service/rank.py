"""One process of a distributed run: ``python -m service.rank``, started by ``torchrun``.

``service.launch`` starts it on every node. Each process joins the process group torchrun set
up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), learns the run ids from rank 0 (only node 0's
launcher recorded them), then executes them in order: rank 0 through
``service.runner.execute_run``, which records everything; the others through ``follow_run``,
which records nothing. When rank 0's run does not succeed (failed, cancelled), rank 0 exits at
once with ``EXIT_RUN_ENDED``: torchrun then stops the other ranks, wherever they wait.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from contract.status import RunStatus
from service.launch import EXIT_RUN_ENDED
from service.runner import execute_run, follow_run
from service.store.repository import Store
from workers.science.distributed import World, broadcast_object

TIMEOUT = timedelta(minutes=30)
"""How long a collective may wait for a silent rank before the process group gives up."""

log = logging.getLogger(__name__)


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m service.rank", description=__doc__)
    parser.add_argument("--runs", default="", help="run ids, comma-separated (node 0 only)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--no-sync-batchnorm", action="store_true")
    return parser.parse_args(argv)


@record
def main(argv: Sequence[str] | None = None) -> int:
    options = arguments(argv)
    world = World(rank=int(os.environ["RANK"]), size=int(os.environ["WORLD_SIZE"]),
                  local_rank=int(os.environ["LOCAL_RANK"]), nnodes=options.nnodes,
                  backend=options.backend, sync_batchnorm=not options.no_sync_batchnorm)
    if options.backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group(options.backend, timeout=TIMEOUT)
    run_ids: list[str] = broadcast_object(
        [r for r in options.runs.split(",") if r] if world.leader else None, world)
    store = Store.from_settings()
    for run_id in run_ids:
        if world.leader:
            ended = execute_run(run_id, store, device=options.device, world=world)
            if ended.status != RunStatus.SUCCEEDED:
                log.warning("run %s %s: stopping every rank", run_id, ended.status)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_RUN_ENDED)  # the others may be inside a collective: torchrun ends them
        else:
            follow_run(run_id, store, device=options.device, world=world)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
