"""What the store costs a run when its records are batched, against one transaction per record.

Claim (issue 14): the records of one epoch, or of one evaluation, go to the store in one
transaction. The same experiment cells run three times in this process on the CPU:

1. ``memory``: a ``MemoryReporter`` (no database): the science's own CPU time;
2. ``per record``: the runner's ``StoreReporter`` with ``max_held=1``, so every record is its
   own transaction, as before batching;
3. ``batched``: the ``StoreReporter`` as ``execute_run`` builds it.

Each store mode writes to a fresh SQLite file (WAL, the CLI's default). Reported: process
CPU seconds, commits (the engine's ``commit`` events, reads included), records written, and
the store's overhead over ``memory``, after one unmeasured warm-up run of each cell. Cells: one
E1 theory cell (many scalar metrics) and one small MNIST training cell
(``specs/quickstart.yaml``'s robust cell, ``--train-subset`` digits, ``--epochs``).

    .venv/bin/python benchmarks/store_batching.py [--data-dir .cache/test-data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import event

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contract.records import MemoryReporter, Reporter  # noqa: E402
from contract.specs.loading import load_spec_file  # noqa: E402
from contract.specs.sweep import expand  # noqa: E402
from service.recording import StoreReporter, record  # noqa: E402
from service.store import migrate  # noqa: E402
from service.store.repository import Store  # noqa: E402
from service.store.storage import LocalStorage  # noqa: E402
from workers.science.context import RunContext  # noqa: E402
from workers.science.experiments import get_experiment  # noqa: E402
from workers.science.training import seed_everything  # noqa: E402


def cells(data_dir: Path, train_subset: int, epochs: int) -> dict[str, Any]:
    """The loaded specs to run, by label (one cell each)."""
    theory = load_spec_file(REPO / "specs" / "paper" / "e1_theory.yaml", [
        "n_train=2000", "n_test=2000", "epochs=150", "distribution.d=400", "eps=[0.4]",
        "device=cpu"])
    train = load_spec_file(REPO / "specs" / "quickstart.yaml", [
        f"dataset.train_subset={train_subset}", "dataset.test_subset=200",
        f"training.epochs={epochs}", "sweep.adversary.eps=[0.3]", "device=cpu"])
    return {"E1 theory cell": theory, f"MNIST train {train_subset} x {epochs} ep": train}


def run_once(loaded: Any, mode: str, data_dir: Path, work: Path) -> dict[str, float]:
    """One cell in ``mode``: CPU seconds, commits, records."""
    spec = expand(loaded.spec)[0].spec
    commits = [0]
    store: Store | None = None
    if mode == "memory":
        reporter: Reporter = MemoryReporter()
        run_id = "memory"
    else:
        url = f"sqlite:///{work / f'{mode}-{time.monotonic_ns()}.db'}"
        migrate.upgrade(url)
        store = Store(url, storage=LocalStorage(work / "artifacts"))
        (run,) = record(loaded, store, force=True).runs
        run_id = run.id
        event.listen(store.engine, "commit", lambda _c: commits.__setitem__(0, commits[0] + 1))
        reporter = StoreReporter(store, run_id, max_held=1 if mode == "per record" else 2000)
    ctx = RunContext(run_id=run_id, run_dir=work / "runs" / f"{mode}-{time.monotonic_ns()}",
                     device=torch.device("cpu"), reporter=reporter, data_dir=data_dir)
    ctx.run_dir.mkdir(parents=True)
    seed_everything(spec.seed)
    start = time.process_time()
    get_experiment(spec.kind)(spec, ctx)
    if isinstance(reporter, StoreReporter):
        reporter.flush()
    cpu = time.process_time() - start
    if isinstance(reporter, MemoryReporter):
        records = len(reporter.evaluations) + len(reporter.metrics)
    else:
        assert store is not None
        records = len(store.results(run_ids=[run_id])) + len(store.metrics(run_id=run_id))
        store.close()
    return {"cpu": cpu, "commits": float(commits[0]), "records": float(records)}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / ".cache" / "test-data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    modes = ("memory", "per record", "batched")
    print("| cell | mode | CPU s (median) | store overhead s | commits | records |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, loaded in cells(args.data_dir, args.train_subset, args.epochs).items():
            measured: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
            run_once(loaded, "memory", args.data_dir, Path(tmp))  # warm-up: first-call costs
            for _ in range(args.repeats):  # interleaved, so drifting load hits every mode
                for mode in modes:
                    measured[mode].append(run_once(loaded, mode, args.data_dir, Path(tmp)))
            bare = median(measured["memory"], "cpu")
            for mode in modes:
                cpu = median(measured[mode], "cpu")
                overhead = ("" if mode == "memory"
                            else f"{cpu - bare:.3f} ({100 * (cpu - bare) / bare:.0f}%)")
                print(f"| {label} | {mode} | {cpu:.3f} | {overhead} | "
                      f"{median(measured[mode], 'commits'):.0f} | "
                      f"{median(measured[mode], 'records'):.0f} |")


if __name__ == "__main__":
    main()
