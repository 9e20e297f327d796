"""AutoAttack: robustlab's native ``autoattack`` and its components against torchattacks 3.5.1.

The claim measured: on the same model and inputs, robustlab's AutoAttack (standard) and each of
its components are at least as strong as torchattacks' counterparts configured as the reference
AutoAttack is (fra31/auto-attack ``version="standard"``: 100 iterations of APGD-CE, APGD-T with
9 target classes, FAB-T with 9 target classes, Square with 5,000 queries and p_init 0.8, its
schedule not rescaled), never more than one example in 100 above theirs, and no slower.
torchattacks' own ``AutoAttack`` class builds its components without ``steps`` (10 iterations,
not 100), so the reference ensemble is rebuilt from its components with ``MultiAttack``, which,
like AutoAttack, runs each attack only on the points still robust.

Each component is also run alone on every input (not chained), ours beside theirs. PGD-100 with
step 0.01 (mnist_challenge's evaluation) is the baseline.

Run by hand (not a test), on a checkpoint robustlab trained:
    .venv/bin/python benchmarks/autoattack.py --checkpoint runs/RUN/checkpoints/epoch-0006.pt \
        --n 100 --data-dir data

Times are this process's CPU time with ``--threads 1`` (the work done, whatever else runs on a
shared machine), or wall time after synchronising on CUDA. Counts are of robust examples out of
``--n``; accuracy = count / n.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torchattacks
from torch import nn

from contract.specs.data import DatasetConfig
from workers.science.attacks import apgd, autoattack, fab, pgd, square
from workers.science.attacks.common import synchronize
from workers.science.checkpoints import load_model
from workers.science.datasets import load_dataset

TA_NORM = {"linf": "Linf", "l2": "L2"}

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x, y) -> adversarial x."""


@dataclass(frozen=True)
class Row:
    name: str
    ours: int
    ours_s: float
    theirs: int | None
    theirs_s: float | None


def _timed(device: torch.device, run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    synchronize(device)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    start = clock()
    out = run()
    synchronize(device)
    return out, clock() - start


def _robust(model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int(((model(x_adv).argmax(1) == y) & (model(x).argmax(1) == y)).sum())


def reference_components(model: nn.Module, norm: str, eps: float, steps: int, queries: int,
                         classes: int) -> dict[str, torchattacks.attack.Attack]:
    """torchattacks' components configured as the reference AutoAttack (standard)."""
    n = TA_NORM[norm]
    return {
        "apgd-ce": torchattacks.APGD(model, norm=n, eps=eps, steps=steps, n_restarts=1,
                                     loss="ce", seed=0),
        "apgd-t": torchattacks.APGDT(model, norm=n, eps=eps, steps=steps, n_restarts=1,
                                     n_classes=classes, seed=0),
        "fab-t": torchattacks.FAB(model, norm=n, eps=eps, steps=steps, n_restarts=1,
                                  multi_targeted=True, n_classes=classes, seed=0),
        "square": torchattacks.Square(model, norm=n, eps=eps, n_queries=queries, n_restarts=1,
                                      p_init=0.8, resc_schedule=False, seed=0),
    }


def our_components(model: nn.Module, norm: str, eps: float, steps: int, queries: int,
                   g: Callable[[], torch.Generator]) -> dict[str, Attack]:
    return {
        "apgd-ce": lambda x, y: apgd(model, x, y, norm=norm, eps=eps, steps=steps, generator=g()),
        "apgd-t": lambda x, y: apgd(model, x, y, norm=norm, eps=eps, steps=steps, targeted=True,
                                    generator=g()),
        "fab-t": lambda x, y: fab(model, x, y, norm=norm, eps=eps, steps=steps, generator=g()),
        "square": lambda x, y: square(model, x, y, norm=norm, eps=eps, queries=queries,
                                      rescale=False, generator=g()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--n", type=int, default=100, help="test examples (the first ones)")
    parser.add_argument("--norm", default="linf", choices=sorted(TA_NORM))
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--pgd-step-size", type=float, default=0.01)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-components", action="store_true",
                        help="only the chained AutoAttack (and clean, PGD)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, meta = load_model(args.checkpoint, device)
    model.eval()
    cfg = DatasetConfig.model_validate({"name": meta["dataset"], "test_subset": args.n})
    data = load_dataset(cfg, args.data_dir, train=False)
    xs, ys = zip(*(data[i] for i in range(args.n)), strict=True)
    x, y = torch.stack(xs).to(device), torch.tensor(ys).to(device)
    classes = int(meta["num_classes"])

    def g() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(0)

    rows: list[Row] = []
    with torch.no_grad():
        rows.append(Row("clean", int((model(x).argmax(1) == y).sum()), 0.0, None, None))
    pgd_x, pgd_s = _timed(device, lambda: pgd(model, x, y, norm=args.norm, eps=args.eps,
                                              step_size=args.pgd_step_size, steps=args.steps,
                                              generator=g()))
    rows.append(Row(f"PGD-{args.steps} (step {args.pgd_step_size:g})",
                    _robust(model, pgd_x, x, y), pgd_s, None, None))
    theirs = reference_components(model, args.norm, args.eps, args.steps, args.queries, classes)
    ours = our_components(model, args.norm, args.eps, args.steps, args.queries, g)
    if not args.skip_components:
        for name in ours:
            ours_x, ours_s = _timed(device, partial(ours[name], x, y))
            theirs_x, theirs_s = _timed(device, partial(theirs[name], x, y))
            rows.append(Row(f"{name} alone", _robust(model, ours_x, x, y), ours_s,
                            _robust(model, theirs_x, x, y), theirs_s))
            print(_format([rows[-1]], args.n, header=False), flush=True)
    ours_aa, ours_aa_s = _timed(device, lambda: autoattack(
        model, x, y, norm=args.norm, eps=args.eps, steps=args.steps, queries=args.queries,
        generator=g()).x_adv)
    chain = torchattacks.MultiAttack(list(theirs.values()))
    theirs_aa, theirs_aa_s = _timed(device, lambda: chain(x, y))
    rows.append(Row("AutoAttack (standard, chained)", _robust(model, ours_aa, x, y), ours_aa_s,
                    _robust(model, theirs_aa, x, y), theirs_aa_s))
    print(f"\n{args.checkpoint} ({meta['arch']}, {meta['dataset']}, trained {meta['train_norm']} "
          f"eps {meta['train_eps']}, epoch {meta.get('epoch')}); {args.n} test examples; "
          f"{args.norm} eps {args.eps}; {args.device}, {args.threads} thread(s)\n")
    print(_format(rows, args.n))


def _format(rows: list[Row], n: int, header: bool = True) -> str:
    lines = (["| attack | robustlab acc. | robustlab s | torchattacks acc. | torchattacks s | "
              "time ratio (ours / theirs) |", "|---|---|---|---|---|---|"] if header else [])
    for row in rows:
        theirs = f"{row.theirs / n:.1%} ({row.theirs})" if row.theirs is not None else ""
        theirs_s = f"{row.theirs_s:.1f}" if row.theirs_s is not None else ""
        ratio = (f"{row.ours_s / row.theirs_s:.2f}"
                 if row.theirs_s is not None and row.theirs_s > 0 else "")
        ours_s = f"{row.ours_s:.1f}" if row.ours_s else ""
        lines.append(f"| {row.name} | {row.ours / n:.1%} ({row.ours}) | {ours_s} | {theirs} | "
                     f"{theirs_s} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
