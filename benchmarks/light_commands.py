"""Start-up of the light commands: `robustlab validate specs/paper/*.yaml` and `robustlab runs`.

Issue 18's claim: both import only the contract and the store, never torch. Each command is
run as a whole process (``python -m service.cli ...``) ``--repeats`` times after a warm-up, and
the median wall time is printed, with whether torch (or the science) was imported. With
``--peer DIR``, the same commands run from another checkout (say, the commit before the
contract package) for a before/after table; both use this interpreter, the peer's tree first
on ``PYTHONPATH``.

    python benchmarks/light_commands.py [--repeats 7] [--peer /tmp/before]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import sys, runpy\nsys.argv = ['robustlab', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('service.cli', run_name='__main__')\n"
         "except SystemExit as exit:\n    code = exit.code\nelse:\n    code = 0\n"
         "heavy = [m for m in ('torch', 'workers', 'celery', 'dashboard') if m in sys.modules]\n"
         "print('HEAVY', ','.join(heavy) or '-', file=sys.stderr)\nsys.exit(code)\n")


def commands(tree: Path) -> dict[str, list[str]]:
    papers = sorted(str(p) for p in (tree / "specs" / "paper").glob("*.yaml"))
    return {"validate specs/paper/*.yaml": ["validate", *papers], "runs": ["runs"]}


def measure(tree: Path, args: list[str], env: dict[str, str], repeats: int) -> tuple[float, str]:
    """Median wall seconds of ``repeats`` runs (one warm-up first) and the heavy modules seen."""
    times, heavy = [], "?"
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=300)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args[:2])} failed in {tree}: {done.stderr.strip()[-300:]}")
        heavy = next((line.split(" ", 1)[1] for line in done.stderr.splitlines()
                      if line.startswith("HEAVY ")), "?")
        if attempt:
            times.append(elapsed)
    return statistics.median(times), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--peer", type=Path, help="another checkout to compare with")
    options = parser.parse_args()
    trees = [("this tree", REPO)] + ([("peer", options.peer.resolve())] if options.peer else [])
    with tempfile.TemporaryDirectory() as scratch:
        envs = {}
        for label, tree in trees:  # each tree's own database, migrated by its own code
            envs[label] = {**os.environ, "PYTHONPATH": str(tree),
                           "ROBUSTLAB_DATABASE_URL": f"sqlite:///{scratch}/{label[:4]}.db"}
            subprocess.run([sys.executable, "-m", "service.cli", "db", "upgrade"], cwd=tree,
                           env=envs[label], check=True, capture_output=True)
        print(f"| command | tree | median wall s (n={options.repeats}) | heavy modules imported |")
        print("|---|---|---|---|")
        for name in commands(REPO):
            for label, tree in trees:
                seconds, heavy = measure(tree, commands(tree)[name], envs[label],
                                         options.repeats)
                print(f"| `{name}` | {label} | {seconds:.2f} | {heavy} |")


if __name__ == "__main__":
    main()
