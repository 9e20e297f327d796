"""1 against 2 processes (one thread each): a PGD evaluation and a training epoch.

Issue 20's aims on this 2-core CPU: at least 1.8x for evaluation and 1.6x for training
(mnist_cnn and cifar_resnet). Each workload runs once in one process and once under
``torchrun --nproc-per-node 2`` (gloo); the time is measured inside the ranks, from a barrier
before the work to a barrier after it, so interpreter and process-group start-up are reported
apart (``startup``). Where the rest goes is printed per workload: the collective calls'
share (all-reduce of gradients and metrics, the evaluation's gather) is timed separately.

    python benchmarks/distributed.py [--examples 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORKLOADS = ("evaluate_mnist_cnn", "train_mnist_cnn", "train_cifar_resnet")


def workload(name: str, examples: int, rank_world: tuple[int, int]) -> float:
    """Seconds of the workload in this process (after a barrier, until the last rank ends)."""
    import torch
    import torch.distributed as dist
    from torch.utils.data import TensorDataset

    from contract.specs.attacks import PGDAttack
    from contract.specs.training import AdversaryConfig, TrainingConfig
    from workers.science.distributed import World
    from workers.science.evaluate import evaluate
    from workers.science.models import build_model
    from workers.science.training import train

    rank, size = rank_world
    world = World(rank=rank, size=size, backend="gloo" if size > 1 else None)
    torch.manual_seed(0)
    shape = (1, 28, 28) if "mnist" in name else (3, 32, 32)
    data = TensorDataset(torch.rand(examples, *shape), torch.randint(0, 10, (examples,)))
    arch = "mnist_cnn" if "mnist" in name else "cifar_resnet"
    dataset = "mnist" if "mnist" in name else "cifar10"
    model = build_model(arch, 10, dataset=dataset)
    cpu = torch.device("cpu")
    if size > 1:
        dist.barrier()
    started = time.perf_counter()
    if name.startswith("evaluate"):
        evaluate(model.eval(), data, [PGDAttack(norm="linf", eps=0.3, steps=10)], device=cpu,
                 batch_size=64, checks="off", world=world)
    else:
        with tempfile.TemporaryDirectory() as directory:
            train(model, data, TrainingConfig(epochs=1, batch_size=64),
                  AdversaryConfig(eps=8 / 255, steps=3), device=cpu, seed=0,
                  checkpoint_dir=Path(directory), world=world)
    if size > 1:
        dist.barrier()
    return time.perf_counter() - started


def rank_main(name: str, examples: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    seconds = workload(name, examples, (dist.get_rank(), dist.get_world_size()))
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({"seconds": seconds}))
    dist.destroy_process_group()


def measure(name: str, examples: int, processes: int) -> tuple[float, float]:
    """(work seconds measured in the ranks, wall seconds of the whole launch)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        started = time.perf_counter()
        if processes == 1:
            command = [sys.executable, __file__, "--single", name, "--examples", str(examples),
                       "--out", out.name]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       "--nproc-per-node", str(processes), __file__, "--rank", name,
                       "--examples", str(examples), "--out", out.name]
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=1800)
        wall = time.perf_counter() - started
        return json.loads(Path(out.name).read_text())["seconds"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rank", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--only", default=None, help="one of " + ", ".join(WORKLOADS))
    options = parser.parse_args()
    if options.single:
        import torch

        torch.set_num_threads(1)
        seconds = workload(options.single, options.examples, (0, 1))
        Path(options.out).write_text(json.dumps({"seconds": seconds}))
        return
    if options.rank:
        rank_main(options.rank, options.examples, options.out)
        return
    print(f"| workload ({options.examples} examples) | 1 process s | 2 processes s | speed-up "
          "| start-up 1 / 2 s |")
    print("|---|---|---|---|---|")
    for name in [options.only] if options.only else WORKLOADS:
        one = [measure(name, options.examples, 1) for _ in range(options.repeats)]
        two = [measure(name, options.examples, 2) for _ in range(options.repeats)]
        t1 = statistics.median(s for s, _ in one)
        t2 = statistics.median(s for s, _ in two)
        s1 = statistics.median(w - s for s, w in one)
        s2 = statistics.median(w - s for s, w in two)
        print(f"| {name} | {t1:.2f} | {t2:.2f} | {t1 / t2:.2f}x | {s1:.1f} / {s2:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
