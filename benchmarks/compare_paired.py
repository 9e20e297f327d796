"""How long ``robustlab compare`` takes with paired differences of 10,000-example evaluations.

Claim: comparing two runs whose evaluations kept 10,000-example correctness bits (CIFAR-10's
test set) takes under 1 s as a whole ``robustlab compare`` process, paired differences (exact
McNemar, Newcombe's interval, Holm) and each attack against the strongest of its ball
included. A temporary SQLite database is filled through the real store
(``Store.write_records``) with two runs; each command runs as a user runs it, a fresh
``robustlab`` process with its output sent to a file, ``--repeats`` times after a warm-up, and
the median wall and CPU time (user + system of the child: less sensitive to other load on a
shared machine) are reported. The floor is ``robustlab compare --help`` (starting Python and
importing the CLI, nothing read); the reference is ``robustlab results --format json`` on the
same store (opening the store: engine, schema check). Two columns time the parts in this
process: reading the runs (``run_sides``: rows, metrics, bits) and the comparison
(``compare``).

Layouts: "1 evaluation": one clean 10,000-example row per run (the claim's minimal case);
"5 evaluations": clean, PGD, APGD, FGSM and the worst case of one ball per run (4 paired
differences, and 2 attacks against the strongest per run); "5, no bits": the same rows
without bits, so every difference is unpaired (Fisher's exact test on 10,000 + 10,000).

    .venv/bin/python benchmarks/compare_paired.py [--examples 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
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

import numpy as np  # noqa: E402

from contract.records import EvaluationRecord  # noqa: E402
from service.analysis.compare import compare  # noqa: E402
from service.cli.compare import run_sides  # noqa: E402
from service.store import migrate  # noqa: E402
from service.store.entities import NewRun  # noqa: E402
from service.store.repository import Store  # noqa: E402
from service.store.storage import LocalStorage  # noqa: E402
from workers.science.example_identity import examples_hash  # noqa: E402

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
ATTACKS = (("none", 0.0, 0.97), ("pgd", 8 / 255, 0.45), ("apgd", 8 / 255, 0.42),
           ("fgsm", 8 / 255, 0.55))
"""(attack, eps, accuracy) of the "5 evaluations" layout; the worst case is added per run."""
DATASET_HASH = "0" * 64
"""Both runs scored the same examples of one dataset (the identity pairing needs)."""


def records(correct: dict[str, np.ndarray], bits: bool) -> list[EvaluationRecord]:
    def one(attack: str, eps: float, hits: np.ndarray) -> EvaluationRecord:
        return EvaluationRecord(
            model="cifar_resnet", dataset="cifar10", split="test", train_norm="linf",
            eval_norm="linf" if eps else None, eval_eps=eps, attack=attack,
            steps=None if attack in ("none", "worst_case") else 20,
            accuracy=float(hits.mean()), n=len(hits),
            per_example=np.packbits(hits).tobytes() if bits else None,
            dataset_hash=DATASET_HASH, examples_hash=examples_hash(np.arange(len(hits))))

    out = [one(attack, eps, correct[attack]) for attack, eps, _ in ATTACKS if attack in correct]
    if len(correct) > 1:
        worst = np.logical_and.reduce([correct[a] for a, eps, _ in ATTACKS if eps and a in correct])
        out.append(one("worst_case", 8 / 255, worst))
    return out


def seed(url: str, artifacts: Path, examples: int, evaluations: int, bits: bool) -> list[str]:
    """Two runs ("bench-a", "bench-b") of the layout; returns their ids."""
    rng = np.random.default_rng(0)
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(artifacts))
    try:
        store.add_spec("spec-bench", "bench", "train", None, "kind: train\n", {})
        ids = []
        for cell, run_id in enumerate(("bench-a", "bench-b")):
            store.add_runs("spec-bench", [NewRun(
                id=run_id, experiment="bench", kind="train", cell=cell, params={},
                resolved_spec={"name": "bench", "seed": cell}, spec_hash=f"h{cell}", seed=cell)])
            correct = {attack: rng.random(examples) < accuracy - 0.01 * cell
                       for attack, _, accuracy in ATTACKS[:evaluations]}
            store.write_records(run_id, evaluations=records(correct, bits))
            store.finish_run(run_id, "succeeded")
            ids.append(run_id)
        return ids
    finally:
        store.close()


def median_wall(args: list[str], env: dict[str, str], cwd: Path, repeats: int
                ) -> tuple[float, float]:
    """Median wall and CPU (user + system of the child) seconds of ``robustlab ARGS``."""
    walls, cpus = [], []
    with open(os.devnull, "w") as sink:
        for attempt in range(repeats + 1):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run([ROBUSTLAB, *args], env=env, cwd=cwd, stdout=sink, check=True)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if attempt:  # the first is a warm-up (page cache, .pyc files)
                walls.append(wall)
                cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def in_process(url: str, artifacts: Path, ids: list[str], repeats: int) -> tuple[float, float]:
    """Median seconds of ``run_sides`` and of ``compare`` in this process."""
    store = Store(url, storage=LocalStorage(artifacts))
    reads, comparisons = [], []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            sides = run_sides(store, ids)
            read = time.perf_counter()
            compare(sides)
            reads.append(read - started)
            comparisons.append(time.perf_counter() - read)
    finally:
        store.close()
    return statistics.median(reads), statistics.median(comparisons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    layouts = {"1 evaluation": (1, True), "5 evaluations": (4, True),
               "5, no bits (unpaired)": (4, False)}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        floor_env = {**os.environ, "ROBUSTLAB_DATABASE_URL": f"sqlite:///{root / 'floor.db'}"}
        floor = median_wall(["compare", "--help"], floor_env, root, options.repeats)
        for name, (evaluations, bits) in layouts.items():
            url = f"sqlite:///{root / (name.split()[0] + str(bits) + '.db')}"
            artifacts = root / "artifacts"
            ids = seed(url, artifacts, options.examples, evaluations, bits)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
            env |= {"ROBUSTLAB_DATABASE_URL": url, "ROBUSTLAB_ARTIFACT_DIR": str(artifacts)}
            table = median_wall(["compare", *ids], env, root, options.repeats)
            json_s = median_wall(["compare", *ids, "--format", "json"], env, root,
                                 options.repeats)
            read, computed = in_process(url, artifacts, ids, options.repeats)
            rows.append((name, table, json_s, read, computed))
            if name == "5 evaluations":  # a command that opens the same store and reads rows
                reference = median_wall(["results", "--format", "json"], env, root,
                                        options.repeats)
    print(f"examples per evaluation: {options.examples:,}; median of {options.repeats} runs; "
          f"floor (`robustlab compare --help`, start-up alone): wall {floor[0]:.2f} s, "
          f"CPU {floor[1]:.2f} s; `robustlab results --format json` on the 5-evaluation "
          f"store (opens the store, reads 10 rows): wall {reference[0]:.2f} s, "
          f"CPU {reference[1]:.2f} s\n")
    print("| layout | `compare A B` wall / CPU s | `--format json` wall / CPU s | "
          "json CPU - floor CPU s | read runs+bits ms | compare() ms |")
    print("|---|---|---|---|---|---|")
    for name, table, json_s, read, computed in rows:
        print(f"| {name} | {table[0]:.2f} / {table[1]:.2f} | {json_s[0]:.2f} / {json_s[1]:.2f} | "
              f"{json_s[1] - floor[1]:+.2f} | {1000 * read:.1f} | {1000 * computed:.1f} |")


if __name__ == "__main__":
    main()
