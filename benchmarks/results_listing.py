"""How long ``robustlab results`` takes on a large results database, beside CSV.

Claim: ``robustlab results`` prints 10,000+ rows in under 2 s (issue 14: 10,533 rows took 20 s
as a rich table, 8.5x CSV). A SQLite database is filled through the real store
(``Store.write_records``) with ``--rows`` evaluation rows spread over runs of 90 rows each
(a Figure 1 cell: 3 splits x 2 norms x 5 eps x 3 attacks); then each command runs as a user
runs it, a fresh ``robustlab`` process with its output sent to a file, ``--repeats`` times,
and the median wall time and CPU time (user + system of the child, less sensitive to other
load on a shared machine) are reported with the ratio to ``--format csv``. A second table times
the parts in this process: the store query, and each rendering of the same rows, including a
rich table of every row (what ``results`` printed before it summarised).

    .venv/bin/python benchmarks/results_listing.py [--rows 10533] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from contract.records import EvaluationRecord  # noqa: E402
from service.results import (  # noqa: E402
    fetch_rows,
    summarise,
    summary_table,
    to_csv,
    to_json,
    to_table,
    to_text,
)
from service.store import migrate  # noqa: E402
from service.store.entities import NewRun  # noqa: E402
from service.store.repository import Store  # noqa: E402
from service.store.storage import LocalStorage  # noqa: E402

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
ROWS_PER_RUN = 90

COMMANDS = {
    "latex": ["results", "--format", "latex"],
    "table (default: summary beyond 100 rows)": ["results"],
    "table --all (every row)": ["results", "--all"],
    "csv": ["results", "--format", "csv"],
    "json": ["results", "--format", "json"],
    "runs (50 newest)": ["runs"],
}


def cell_rows(cell: int) -> list[EvaluationRecord]:
    """The 90 evaluation rows of one training cell."""
    train_eps = 0.05 * (cell % 7)
    rows = []
    for split in ("train", "val", "test"):
        for norm, radii in (("linf", (0.0, 0.1, 0.2, 0.3, 0.4)), ("l2", (0.0, 0.5, 1.0, 1.5, 2.0))):
            for eps in radii:
                for attack, steps in (("pgd", 20), ("pgd", 100), ("fgsm", 1)):
                    rows.append(EvaluationRecord(
                        model="mnist_cnn", dataset="mnist", split=split, train_norm="linf",
                        train_eps=train_eps, eval_norm=norm if eps else None, eval_eps=eps,
                        attack=attack if eps else "none", steps=steps if eps else None,
                        accuracy=max(0.0, 0.99 - eps * 0.4 - train_eps * 0.1), n=10_000,
                        variant="" if eps else f"clean-{norm}-{attack}-{steps}"))
    return rows


def seed(url: str, artifact_dir: Path, total: int) -> int:
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(artifact_dir))
    cells = -(-total // ROWS_PER_RUN)
    store.add_spec("bench-spec", "bench_results", "train", None, "kind: train\n", {})
    runs = store.add_runs("bench-spec", [
        NewRun(id=f"bench{cell:07d}", experiment="bench_results", kind="train", cell=cell,
               params={"adversary.eps": 0.05 * (cell % 7)}, resolved_spec={"kind": "train"},
               spec_hash=f"bench-{cell}", seed=cell % 3)
        for cell in range(cells)])
    written = 0
    for run in runs:
        rows = cell_rows(run.cell)[: total - written]
        store.write_records(run.id, evaluations=rows)
        written += len(rows)
    store.close()
    return written


def timed(args: list[str], env: dict[str, str], cwd: Path,
          repeats: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``robustlab ARGS``, and the bytes it printed."""
    times, cpu, size = [], [], 0
    for _ in range(repeats):
        with open(cwd / "out.txt", "w") as sink:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run([ROBUSTLAB, *args], cwd=cwd, env=env, stdout=sink,
                                  stderr=subprocess.PIPE, text=True)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"robustlab {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stderr}")
        size = (cwd / "out.txt").stat().st_size
    return statistics.median(times), statistics.median(cpu), size


def parts(url: str, artifact_dir: Path) -> dict[str, float]:
    """Seconds of the query and of each rendering, in this process (imports already paid)."""
    store = Store(url, storage=LocalStorage(artifact_dir))
    start = time.perf_counter()
    rows = fetch_rows(store)
    took = {"query (fetch_rows)": time.perf_counter() - start}
    store.close()
    console = Console(file=io.StringIO(), width=200)
    renderings = {
        "summary table (default)": lambda: console.print(
            summary_table(summarise(rows), shown=100, total=len(rows))),
        "plain text, every row (--all)": lambda: to_text(rows),
        "csv": lambda: to_csv(rows),
        "json": lambda: to_json(rows),
        "rich table, every row (before)": lambda: console.print(to_table(rows)),
    }
    for name, render in renderings.items():
        start = time.perf_counter()
        render()
        took[name] = time.perf_counter() - start
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_533)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'bench.db'}"
        start = time.perf_counter()
        rows = seed(url, work / "artifacts", args.rows)
        print(f"seeded {rows:,} rows in {time.perf_counter() - start:.1f} s ({url})")
        env = {**os.environ, "ROBUSTLAB_DATABASE_URL": url,
               "ROBUSTLAB_ARTIFACT_DIR": str(work / "artifacts")}
        measured = {name: timed(command, env, work, args.repeats)
                    for name, command in COMMANDS.items()}
        in_process = parts(url, work / "artifacts")
    csv_s, csv_cpu = measured["csv"][:2]
    print(f"\n| command ({rows:,} rows) | median wall s | x csv | median CPU s | x csv "
          "| output bytes |")
    print("|---|---|---|---|---|---|")
    for name, (seconds, cpu, size) in measured.items():
        print(f"| {name} | {seconds:.2f} | {seconds / csv_s:.2f} | {cpu:.2f} | "
              f"{cpu / csv_cpu:.2f} | {size:,} |")
    print(f"\n| in one process ({rows:,} rows) | s |")
    print("|---|---|")
    for name, seconds in in_process.items():
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
