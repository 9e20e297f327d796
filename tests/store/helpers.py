"""Helpers for store tests: recording a spec with a few runs, as the runner would."""

from __future__ import annotations

from service.store.entities import NewRun, RunInfo
from service.store.repository import Store


def new_runs(experiment: str, cells: int, *, prefix: str = "run") -> list[NewRun]:
    """Runs of a sweep over ``train_eps``, one per cell."""
    return [
        NewRun(id=f"{prefix}{cell:04d}", experiment=experiment, kind="theory", cell=cell,
               params={"train_eps": 0.1 * cell}, resolved_spec={"kind": "theory", "cell": cell},
               spec_hash=f"hash-{experiment}-{cell}", seed=cell)
        for cell in range(cells)
    ]


def record_runs(store: Store, experiment: str = "e1", cells: int = 2, *,
                prefix: str = "run") -> list[RunInfo]:
    """Add a spec named ``experiment`` and ``cells`` queued runs of it."""
    spec_id = f"spec-{experiment}"
    store.add_spec(spec_id, experiment, "theory", None, "kind: theory\n", {"kind": "theory"})
    return store.add_runs(spec_id, new_runs(experiment, cells, prefix=prefix))
