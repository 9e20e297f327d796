"""A run over several processes computes what one process computes.

Real ``torchrun`` processes (gloo, one thread each): the sharded evaluation equals the
one-process evaluation example by example, for PGD, APGD-T, Square, AutoAttack components
and the worst case; the global batches of an epoch are the same at every world size; a
synchronised BatchNorm normalises by the global batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from contract.specs.attacks import APGDAttack, AutoAttack, PGDAttack, SquareAttack
from workers.science.distributed import GlobalBatches, SyncedBatchNorm, World, shard
from workers.science.evaluate import EvaluationResult, evaluate

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
ATTACKS = [
    PGDAttack(norm="linf", eps=0.1, steps=5, restarts=2),
    APGDAttack(norm="linf", eps=0.1, steps=5, targeted=True, n_target_classes=2),
    SquareAttack(norm="l2", eps=0.5, queries=20),
    AutoAttack(norm="linf", eps=0.1, steps=3, queries=10, n_target_classes=2),
]


def evaluation_case() -> tuple[nn.Module, TensorDataset]:
    """A seeded small CNN with BatchNorm and 70 images (5 batches of 16, the last short)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 4))
    model[1].running_mean.uniform_(-0.1, 0.1)
    model[1].running_var.uniform_(0.5, 1.5)
    x = torch.rand(70, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    y[::5] = (y[::5] + 1) % 4  # some clean mistakes too
    return model, TensorDataset(x, y)


def outcomes(result: EvaluationResult) -> dict[str, Any]:
    """Every per-example outcome of a result, by name."""
    found: dict[str, Any] = {"clean": result.clean}
    for index, outcome in enumerate(result.attacks):
        found[f"attack{index}"] = outcome.correct
        for component in outcome.components:
            found[f"attack{index}:{component.name}"] = component.correct
    for norm, eps in result.threat_groups():
        found[f"worst:{norm}:{eps}"] = result.worst_case(norm, eps)
    found["checks"] = {name: check["passed"] for name, check in result.checks.items()}
    return found


@pytest.mark.slow
def test_a_sharded_evaluation_equals_one_process_example_by_example(tmp_path: Path) -> None:
    model, data = evaluation_case()
    alone = outcomes(evaluate(model, data, ATTACKS, device=CPU, batch_size=16, checks="all",
                              seed=3))
    out = tmp_path / "sharded.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(REPO / "tests" / "science" / "distributed_evaluation.py"), str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = torch.load(out, weights_only=True)
    assert sharded.keys() == alone.keys()
    assert len(alone) >= 10  # clean, 4 attacks, AutoAttack's components, 2 worst cases
    for name, bits in alone.items():
        if name == "checks":
            assert sharded[name] == bits
        else:
            assert torch.equal(sharded[name], bits), name
    assert not bool(alone["worst:linf:0.1"].all())  # the attacks broke something


def test_global_batches_are_the_same_at_every_world_size() -> None:
    one = GlobalBatches(103, 12, seed=5, world=World())
    one.set_epoch(2)
    expected = one.global_batches()
    for size in (2, 3, 4):
        shards = []
        for rank in range(size):
            sampler = GlobalBatches(103, 12, seed=5, world=World(rank=rank, size=size))
            sampler.set_epoch(2)
            shards.append(list(sampler))
        for index, batch in enumerate(expected):
            joined = [i for rank in range(size) for i in shards[rank][index]]
            assert joined == batch.tolist()
    other = GlobalBatches(103, 12, seed=5, world=World())
    other.set_epoch(3)
    assert other.global_batches()[0].tolist() != expected[0].tolist()


def test_a_batch_size_the_world_size_does_not_divide_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size 10 is the global batch: it must be "
                       "divisible by the world size 4"):
        GlobalBatches(100, 10, seed=0, world=World(rank=0, size=4))


def test_shards_split_a_batch_evenly() -> None:
    batch = torch.arange(7)
    parts = [shard(batch, World(rank=r, size=3)).tolist() for r in range(3)]
    assert parts == [[0, 1], [2, 3], [4, 5, 6]]


def test_synced_batchnorm_in_one_process_is_batchnorm() -> None:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    synced = SyncedBatchNorm(3)
    synced.load_state_dict(plain.state_dict())
    x = torch.randn(5, 3, 4, 4)
    assert torch.allclose(plain(x), synced(x))
    assert torch.allclose(plain.running_var, synced.running_var)
    assert set(synced.state_dict()) == set(plain.state_dict())
