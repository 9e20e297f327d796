"""One rank of the sharded-evaluation test: ``torchrun ... distributed_evaluation.py OUT``.

Every rank builds the same seeded model and data, evaluates them sharded over the world, and
rank 0 saves the per-example outcomes to OUT (``tests/science/test_distributed.py`` compares
them with a one-process evaluation).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from tests.science.test_distributed import ATTACKS, evaluation_case, outcomes
from workers.science.distributed import World
from workers.science.evaluate import evaluate

if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    world = World(rank=dist.get_rank(), size=dist.get_world_size(),
                  local_rank=int(os.environ["LOCAL_RANK"]), backend="gloo")
    model, data = evaluation_case()
    result = evaluate(model, data, ATTACKS, device=torch.device("cpu"), batch_size=16,
                      checks="all", seed=3, world=world)
    if world.leader:
        torch.save(outcomes(result), sys.argv[1])
    dist.barrier()
    dist.destroy_process_group()
