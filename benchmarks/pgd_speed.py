"""PGD speed: robustlab's ``pgd`` against its floor and against torchattacks' PGD.

The claim measured: the one generic PGD loop, with best-iterate tracking, costs little more than
its floor, ``steps`` x (one forward + one backward w.r.t. the input) on the same batch, is no
slower than torchattacks' l_inf loop, and is at least as strong: it returns each example's
worst iterate, torchattacks the last one.

Run by hand (not a test); torchattacks is needed here only:
    .venv/bin/pip install --no-deps torchattacks
    .venv/bin/python benchmarks/pgd_speed.py --data-dir .cache/test-data

Models (timing an attack needs no fully trained model): ``mnist_cnn`` briefly trained on real
MNIST digits from ``--data-dir`` and attacked on test digits; ``cifar_resnet`` (CIFAR-10 cannot be
had offline) briefly trained to memorise random images with random labels, and attacked on those
images. Accuracy is measured with a random start (each attack draws its own) and without one:
then both loops walk the same path, so ours can only be lower or equal.

Times are the minimum over ``--repeats`` interleaved rounds after one warm-up. On the CPU they
are this process's CPU time (with ``--threads 1``, the default, that is the work done, whatever
else runs on a shared machine); on CUDA wall time after synchronising. One row per model and
device.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchattacks
from torch import nn

from contract.specs.data import DatasetConfig
from workers.science.attacks import pgd
from workers.science.attacks.common import attack_mode
from workers.science.datasets import ImageTensorDataset, load_dataset
from workers.science.losses import classification_loss, correct
from workers.science.models import build_model

EPS = {"mnist_cnn": 0.1, "cifar_resnet": 2 / 255}
"""l_inf radii at which the briefly trained models are partly robust, so the attacks' accuracies
can differ (at the paper's 0.3 and 8/255 both reach 0%); the cost does not depend on eps."""
TRAIN_BATCH = 64

Setup = tuple[nn.Module, torch.Tensor, torch.Tensor, str]
"""(model in eval mode, images to attack, their labels, how the model was made)."""


@dataclass(frozen=True)
class Row:
    arch: str
    device: str
    batch: int
    steps: int
    floor_s: float
    ours_s: float
    ours_last_s: float
    theirs_s: float
    clean_acc: float
    ours_acc: float
    ours_last_acc: float
    theirs_acc: float
    ours_acc_fixed_start: float
    theirs_acc_fixed_start: float


# --------------------------------------------------------------------------- models and data


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    """``steps`` Adam steps on consecutive batches of (x, y), cycling; returns it in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        index = torch.arange(step * TRAIN_BATCH, (step + 1) * TRAIN_BATCH) % x.shape[0]
        optimizer.zero_grad()
        classification_loss(model(x[index]), y[index], reduction="mean").backward()
        optimizer.step()
    return model.eval()


def mnist_setup(args: argparse.Namespace, device: torch.device) -> Setup:
    """``mnist_cnn`` trained briefly on real MNIST; the first test digits to attack."""
    train = load_dataset(DatasetConfig(name="mnist"), args.data_dir, train=True)
    test = load_dataset(DatasetConfig(name="mnist"), args.data_dir, train=False)
    if not isinstance(train, ImageTensorDataset) or not isinstance(test, ImageTensorDataset):
        raise TypeError("expected MNIST as in-memory tensors")
    torch.manual_seed(0)
    x_train, y_train = (t.to(device) for t in train.tensors())
    model = _train(build_model("mnist_cnn", 10).to(device), x_train, y_train, args.train_steps)
    x, y = (t[: args.batch].to(device) for t in test.tensors())
    return model, x, y, f"{args.train_steps} Adam steps on real MNIST, attacked on test digits"


def memorising_resnet_setup(args: argparse.Namespace, device: torch.device) -> Setup:
    """``cifar_resnet`` trained to memorise random images with random labels; those images."""
    torch.manual_seed(0)
    x = torch.rand((args.batch, 3, 32, 32), device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    model = _train(build_model("cifar_resnet", 10).to(device), x, y, args.train_steps)
    return model, x, y, f"{args.train_steps} Adam steps memorising random images/labels"


SETUPS: dict[str, Callable[[argparse.Namespace, torch.device], Setup]] = {
    "mnist_cnn": mnist_setup,
    "cifar_resnet": memorising_resnet_setup,
}


# --------------------------------------------------------------------------- timing


def best_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
               ) -> dict[str, float]:
    """Minimum wall time of each function over ``repeats`` rounds, after one warm-up each.

    The functions take turns within a round, so a burst of load from other processes hits all
    of them alike rather than one.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    clock = _clock(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = clock()
            fn()
            _sync(device)
            times[name].append(clock() - start)
    return {name: min(values) for name, values in times.items()}


def _clock(device: torch.device) -> Callable[[], float]:
    """CPU time of this process on the CPU (robust to other processes), wall time on CUDA."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """The least any PGD must do: ``steps`` forwards and input-gradient backwards, nothing else.

    ``x`` should be a point PGD would visit (the batch after a random start), not the clean
    batch: on the CPU a forward+backward of ``mnist_cnn`` costs about 5% less on clean digits
    (whose many exact zeros make max-pooling cheaper) than on perturbed ones.
    """
    with attack_mode(model):
        for _ in range(steps):
            x_in = x.detach().requires_grad_(True)
            loss = classification_loss(model(x_in), y).sum()
            torch.autograd.grad(loss, x_in)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(correct(model(x), y).float().mean())


def paired_accuracy(model: nn.Module, attack: Callable[[], torch.Tensor], y: torch.Tensor,
                    seeds: int = 5) -> float:
    """Mean accuracy over ``seeds`` random starts, torch's global seed set before each.

    Both attacks draw their start from the global generator with the same number of uniform
    values, so with equal seeds they start from the same points and the comparison is paired.
    """
    values = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        values.append(accuracy(model, attack(), y))
    return sum(values) / seeds


# --------------------------------------------------------------------------- one row


def measure(arch: str, device: torch.device, args: argparse.Namespace) -> tuple[Row, str]:
    model, x, y, made = SETUPS[arch](args, device)
    eps, steps = EPS[arch], args.steps
    step_size = 2.5 * eps / steps

    def ours(random_start: bool = True) -> torch.Tensor:
        return pgd(model, x, y, norm="linf", eps=eps, step_size=step_size, steps=steps,
                   random_start=random_start)

    def ours_last() -> torch.Tensor:
        return pgd(model, x, y, norm="linf", eps=eps, step_size=step_size, steps=steps,
                   best_iterate=False)

    def theirs(random_start: bool = True) -> torch.Tensor:
        attack = torchattacks.PGD(model, eps=eps, alpha=step_size, steps=steps,
                                  random_start=random_start)
        return attack(x, y)

    started = (x + (2 * torch.rand_like(x) - 1) * eps).clamp(0, 1)  # what PGD's steps see
    times = best_times({"floor": lambda: floor_pass(model, started, y, steps), "ours": ours,
                        "ours_last": ours_last, "theirs": theirs}, args.repeats, device)
    row = Row(
        arch=arch, device=str(device), batch=x.shape[0], steps=steps,
        floor_s=times["floor"], ours_s=times["ours"], ours_last_s=times["ours_last"],
        theirs_s=times["theirs"], clean_acc=accuracy(model, x, y),
        ours_acc=paired_accuracy(model, ours, y), ours_last_acc=paired_accuracy(model, ours_last, y),
        theirs_acc=paired_accuracy(model, theirs, y),
        ours_acc_fixed_start=accuracy(model, ours(random_start=False), y),
        theirs_acc_fixed_start=accuracy(model, theirs(random_start=False), y),
    )
    return row, made


HEADER = ("| model | device | batch | steps | floor s | ours s | ours last-iterate s "
          "| torchattacks s | ours/floor | ours/torchattacks | last-iterate/floor "
          "| last-iterate/torchattacks | clean acc | adv acc ours | adv acc ours last-iterate "
          "| adv acc torchattacks | no random start: ours | no random start: torchattacks |")


def table_row(r: Row) -> str:
    return (f"| {r.arch} | {r.device} | {r.batch} | {r.steps} | {r.floor_s:.3f} | {r.ours_s:.3f} "
            f"| {r.ours_last_s:.3f} | {r.theirs_s:.3f} | {r.ours_s / r.floor_s:.2f} "
            f"| {r.ours_s / r.theirs_s:.2f} | {r.ours_last_s / r.floor_s:.2f} "
            f"| {r.ours_last_s / r.theirs_s:.2f} | {r.clean_acc:.3f} | {r.ours_acc:.3f} "
            f"| {r.ours_last_acc:.3f} | {r.theirs_acc:.3f} "
            f"| {r.ours_acc_fixed_start:.3f} | {r.theirs_acc_fixed_start:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="holds mnist/MNIST/raw")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--archs", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
    notes = []
    for device in devices:
        for arch in args.archs:
            row, made = measure(arch, device, args)
            print(table_row(row), flush=True)
            notes.append(f"{arch} on {device}: {made}, eps {EPS[arch]:.4g}")
    print("\n".join(["", *notes]))


if __name__ == "__main__":
    main()
