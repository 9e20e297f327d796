"""Training speed: one epoch of each training method against its floor and a hand-written loop.

The claim measured: robustlab's training loop (``workers.science.training.train``) spends no pass
on a metric and adds little beyond the passes each method needs, so an epoch costs at most
about 1.05x its floor:

- pgd: K frozen-parameter forward + input-gradient passes, 1 forward + backward, the step;
- trades: the same plus the clean batch's forward *and its backward* (TRADES' loss
  CE(f(x), y) + beta * KL(f(x) || f(x')) sends gradients through f(x) too), the clean
  forward doubling as the attack's target;
- fgsm_rs: 1 forward + input-gradient pass, 1 forward + backward, the step.

The floor times exactly those passes on the same batches, already in memory, and nothing else
(no projection, no data loading). The hand-written loop is what one writes in twenty lines
(Madry et al.'s, Wong et al.'s and Zhang et al.'s loops: a DataLoader over the same data, the
attack, the step, no metrics, no checkpoints, no cancel checks); its TRADES forwards the clean
batch once more without gradient for the attack's target, as a careful user would (the TRADES
reference code forwards it in every attack step).

Run by hand (not a test):
    .venv/bin/python benchmarks/train_speed.py --repeats 3

Times are the minimum over ``--repeats`` interleaved rounds after one warm-up: on the CPU this
process's CPU time with one torch thread (the work done, whatever else runs on a shared
machine), on CUDA wall time after synchronising. ours = the time from the first batch of the
epoch to the ``on_epoch`` hook (no checkpoint write). mnist_cnn trains on real Fashion-MNIST
images (fetched from Debian's package into a temporary directory), cifar_resnet on random
images (CIFAR-10 is not available offline); the cost does not depend on what is learnt.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from contract.specs.data import DatasetConfig
from contract.specs.training import AdversaryConfig, TrainingConfig
from workers.science import data_fetch
from workers.science.datasets import ImageTensorDataset, load_dataset
from workers.science.models import build_model
from workers.science.training import TrainHooks, train
from workers.science.training.ema import WeightAverage

EPS = {"mnist_cnn": 0.3, "cifar_resnet": 8 / 255, "preact_resnet18": 8 / 255,
       "wide_resnet": 8 / 255}
DATASET = {"mnist_cnn": "fashion_mnist", "cifar_resnet": "cifar10", "preact_resnet18": "cifar10",
           "wide_resnet": "cifar10"}
KWARGS: dict[str, dict[str, object]] = {"wide_resnet": {"depth": 16, "widen_factor": 4}}
"""The field's models at a CPU-sized scale: WRN-16-4 stands in for WRN-34-10 (the same blocks,
fewer and narrower; the cost per parameter is what the floor compares)."""
METHODS = ("pgd", "trades", "fgsm_rs")


@dataclass(frozen=True)
class Row:
    arch: str
    device: str
    method: str
    steps: int
    examples: int
    floor_s: float
    ours_s: float
    hand_s: float


# --------------------------------------------------------------------------- data and models


def make_data(arch: str, examples: int, data_dir: Path | None) -> ImageTensorDataset:
    """Real Fashion-MNIST images for mnist_cnn; random CIFAR-shaped images for the others."""
    if arch == "mnist_cnn":
        root = data_dir or Path(tempfile.mkdtemp(prefix="train-speed-"))
        if not (root / "fashion_mnist").is_dir():
            data_fetch.fetch("fashion_mnist", root)
        cfg = DatasetConfig.model_validate({"name": "fashion_mnist", "train_subset": examples})
        data = load_dataset(cfg, root, train=True)
        assert isinstance(data, ImageTensorDataset)
        return data
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (examples, 3, 32, 32), generator=generator, dtype=torch.uint8)
    return ImageTensorDataset(images, torch.randint(0, 10, (examples,), generator=generator))


def fresh_model(arch: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch, 10, dataset=DATASET[arch], kwargs=KWARGS.get(arch)).to(device)


def optimizer_of(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


# --------------------------------------------------------------------------- timing


def timed(device: torch.device, fn: Callable[[], None]) -> float:
    """CPU time of ``fn`` on the CPU, wall time after synchronising on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        return time.perf_counter() - start
    start = time.process_time()
    fn()
    return time.process_time() - start


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


# --------------------------------------------------------------------------- the three loops


def floor_epoch(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], method: str,
                steps: int) -> None:
    """Only the passes the method needs, on batches already on the device."""
    optimizer = optimizer_of(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    attack_passes = 1 if method == "fgsm_rs" else steps
    for x, y in batches:
        for p in params:
            p.requires_grad_(False)
        x_in = x.clone().requires_grad_(True)
        for _ in range(attack_passes):
            torch.autograd.grad(F.cross_entropy(model(x_in), y), x_in)
        for p in params:
            p.requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        if method == "trades":  # the clean forward and backward as well
            loss = loss + F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def hand_epoch(model: nn.Module, data: Dataset, method: str, steps: int, eps: float,
               batch_size: int, device: torch.device) -> None:
    """What one writes by hand: Madry's / Wong's / Zhang's loops in their plainest form."""
    optimizer = optimizer_of(model)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if method == "trades":
            with torch.no_grad():
                target = F.softmax(model(x), dim=1)
            x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
            alpha = 2.5 * eps / steps
            for _ in range(steps):
                x_adv.requires_grad_(True)
                kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), target, reduction="sum")
                (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps),
                                  x + eps).clamp(0, 1)
            logits = model(x)
            loss = F.cross_entropy(logits, y) + 6.0 * F.kl_div(
                F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        else:
            k, alpha = (1, 1.25 * eps) if method == "fgsm_rs" else (steps, 2.5 * eps / steps)
            x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
            for _ in range(k):
                x_adv.requires_grad_(True)
                (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
                x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps),
                                  x + eps).clamp(0, 1)
            loss = F.cross_entropy(model(x_adv), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def ours_epoch(model: nn.Module, data: Dataset, method: str, steps: int, eps: float,
               batch_size: int, device: torch.device) -> float:
    """robustlab's ``train`` for one epoch: time from its first batch to ``on_epoch``."""
    marks: list[float] = []

    def first_batch() -> bool:
        if not marks:
            marks.append(clock(device))
        return False

    cfg = TrainingConfig.model_validate({
        "epochs": 1, "batch_size": batch_size,
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}})
    adversary = AdversaryConfig.model_validate(
        {"method": method, "eps": eps, "steps": steps, "overfit_check": False})
    with tempfile.TemporaryDirectory() as directory:
        train(model, data, cfg, adversary, device=device, checkpoint_dir=Path(directory), seed=0,
              hooks=TrainHooks(should_stop=first_batch,
                               on_epoch=lambda metrics: marks.append(clock(device))))
    return marks[-1] - marks[0]


# --------------------------------------------------------------------------- driver


def measure(arch: str, device: torch.device, method: str, *, steps: int, examples: int,
            batch_size: int, repeats: int, data_dir: Path | None) -> Row:
    data = make_data(arch, examples, data_dir)
    x_all, y_all = data.tensors()
    batches = [(x_all[i:i + batch_size].to(device), y_all[i:i + batch_size].to(device))
               for i in range(0, examples, batch_size)]
    eps = EPS[arch]
    base = fresh_model(arch, device)
    best = {"floor": float("inf"), "ours": float("inf"), "hand": float("inf")}
    for round_ in range(repeats + 1):  # round 0 warms up
        times = {
            "floor": timed(device, lambda: floor_epoch(copy.deepcopy(base), batches, method, steps)),
            "ours": ours_epoch(copy.deepcopy(base), data, method, steps, eps, batch_size, device),
            "hand": timed(device, lambda: hand_epoch(copy.deepcopy(base), data, method, steps,
                                                     eps, batch_size, device)),
        }
        if round_ > 0:
            best = {key: min(best[key], value) for key, value in times.items()}
    return Row(arch, device.type, method, 1 if method == "fgsm_rs" else steps, examples,
               best["floor"], best["ours"], best["hand"])


def ema_cost(arch: str, device: torch.device, *, batch_size: int, steps: int = 20
             ) -> tuple[float, float]:
    """(ms per clean training step, ms per ``WeightAverage.update``), median over ``steps``:
    what ``training.ema`` adds to every optimiser step."""
    model = fresh_model(arch, device)
    optimizer = optimizer_of(model)
    average = WeightAverage(model, 0.995)
    data = make_data(arch, batch_size, None) if arch != "mnist_cnn" else None
    if data is None:
        x = torch.rand(batch_size, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (batch_size,), device=device)
    else:
        x_all, y = data.tensors()
        x, y = x_all.to(device), y.to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    step_times, ema_times = [], []
    for _ in range(steps + 2):  # two warm-ups
        step_times.append(timed(device, step))
        ema_times.append(timed(device, average.update))
    median = lambda values: sorted(values[2:])[len(values[2:]) // 2]  # noqa: E731
    return 1000 * median(step_times), 1000 * median(ema_times)


def markdown(rows: list[Row]) -> str:
    lines = ["| model | device | method | attack steps | examples | floor s | ours s | "
             "hand-written s | ours/floor | ours/hand-written |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.arch} | {r.device} | {r.method} | {r.steps} | {r.examples} | "
                     f"{r.floor_s:.3f} | {r.ours_s:.3f} | {r.hand_s:.3f} | "
                     f"{r.ours_s / r.floor_s:.3f} | {r.ours_s / r.hand_s:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=["mnist_cnn", "cifar_resnet"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=7, help="K of pgd and trades")
    parser.add_argument("--examples", type=int, default=512, help="examples per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="holds fashion_mnist/ (fetched into a temporary directory if absent)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for arch in args.archs:
            for method in args.methods:
                rows.append(measure(arch, device, method, steps=args.steps,
                                    examples=args.examples, batch_size=args.batch_size,
                                    repeats=args.repeats, data_dir=args.data_dir))
                print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown(rows))
    print()
    print("| model | device | training step ms | EMA update ms | EMA / step |")
    print("|---|---|---|---|---|")
    for device in devices:
        for arch in args.archs:
            step_ms, ema_ms = ema_cost(arch, device, batch_size=args.batch_size)
            print(f"| {arch} | {device.type} | {step_ms:.1f} | {ema_ms:.2f} | "
                  f"{ema_ms / step_ms:.2%} |", flush=True)


if __name__ == "__main__":
    main()
