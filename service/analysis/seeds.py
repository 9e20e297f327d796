"""Result rows pooled over seeds: one row per cell, its mean, spread and t interval.

A *cell* is a resolved spec apart from its ``seed``: the runs of a sweep over ``seed`` (or the
same spec submitted again with another seed) are the cell's repeats. An ``evaluate`` run of a
checkpoint (``source.run``) belongs to the cell of the run that trained it, so evaluations of
three seeds' models are three repeats even though each spec names another run id. Within a
cell, rows with the same result key (``KEY_COLUMNS``: which accuracy it is) are pooled:
mean and sample standard deviation of the accuracy over the seeds, and the 95% t interval of
the mean (``service.analysis.stats.mean_interval``; none with a single seed).

Training variance between seeds is often larger than sampling error (Bouthillier et al.,
MLSys 2021); this interval covers both (each seed's accuracy already carries its sampling
error), not the weakness of an attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from service.analysis.common import RunFacts, canonical, spec_key
from service.analysis.stats import mean_interval

KEY_COLUMNS = ("experiment", "kind", "model", "dataset", "split", "train_norm", "train_eps",
               "train_method", "eval_norm", "eval_eps", "attack", "steps", "step_size",
               "restarts", "variant", "checkpoint")
"""What makes two rows of one cell the same accuracy (the store's evaluation key, plus the
run's experiment and kind, which a cell determines anyway)."""

OVER_SEEDS_COLUMNS = (*KEY_COLUMNS, "cell", "n", "mean", "std", "seeds", "ci_low", "ci_high",
                      "seed_values", "run_ids")
"""The keys of every row of ``results --over-seeds`` (a contract: scripts parse these).
``cell``: 16 hex digits naming the spec less its seed; ``n``: examples per evaluation (null
when the seeds' rows differ); ``seeds``: how many seeds; ``seed_values``/``run_ids``: which."""

def over_seeds(rows: Sequence[Mapping[str, Any]], runs: Mapping[str, RunFacts],
               lookup: Callable[[str], RunFacts | None] | None = None,
               confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per (cell, result key), in first-seen order, with ``OVER_SEEDS_COLUMNS``.

    Args:
        rows: result rows (``contract.columns.COLUMNS`` keys).
        runs: the runs the rows belong to, by id (rows of runs not here are left out).
        lookup: finds a ``source.run`` that is not in ``runs`` (default: ``runs.get``).
        confidence: the t interval's level.

    A seed measured twice in one cell (a repeated run) counts once: its first row here. An
    evaluation's seed is the seed of the run that trained its checkpoint (with its own seed,
    which seeds only the attacks' random starts, telling two evaluations of one model apart).
    """
    find = lookup or runs.get
    cells: dict[str, str] = {}
    groups: dict[tuple[str, str], dict[tuple[int, int], tuple[str, Mapping[str, Any]]]] = {}
    for row in rows:
        run = runs.get(str(row["run_id"]))
        accuracy = row.get("accuracy")
        if run is None or accuracy is None or math.isnan(accuracy):
            continue
        if run.id not in cells:
            cells[run.id] = spec_key(run, find)
        key = (cells[run.id], canonical([row.get(column) for column in KEY_COLUMNS]))
        seed = (_seed_of(run, find), run.seed)
        groups.setdefault(key, {}).setdefault(seed, (run.id, row))
    out = []
    for (cell, _), members in groups.items():
        seeds = sorted(members)
        first = members[seeds[0]][1]
        values = [float(members[seed][1]["accuracy"]) for seed in seeds]
        found = mean_interval(values, confidence)
        sizes = {members[seed][1].get("n") for seed in seeds}
        out.append({
            **{column: first.get(column) for column in KEY_COLUMNS},
            "cell": cell, "n": sizes.pop() if len(sizes) == 1 else None,
            "mean": found.mean, "std": _or_none(found.std), "seeds": len(seeds),
            "ci_low": _or_none(found.ci_low), "ci_high": _or_none(found.ci_high),
            "seed_values": [seed for seed, _ in seeds],
            "run_ids": [members[seed][0] for seed in seeds],
        })
    return out


def _seed_of(run: RunFacts, lookup: Callable[[str], RunFacts | None]) -> int:
    """The run's seed, or for an evaluation of a trained run, the trained run's seed (an
    evaluate spec keeps its own seed for the attacks' random starts, usually fixed)."""
    source = run.resolved_spec.get("source")
    if isinstance(source, Mapping) and source.get("run"):
        trained = lookup(str(source["run"]))
        if trained is not None:
            return trained.seed
    return run.seed


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value
