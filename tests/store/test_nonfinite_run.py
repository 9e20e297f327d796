"""A NaN or infinite metric through the real ``StoreReporter`` and ``execute_run`` (issue 19):
stored as null, never raised mid-write, and the run finishes (it once stayed 'running')."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from contract.records import MetricRecord
from contract.specs.loading import load_spec_text
from contract.status import RunStatus
from service import runner
from service.recording import record
from service.settings import Settings
from service.store.repository import Store
from tests.workers.helpers import theory_spec


def _reports_nonfinite(_spec: Any, ctx: Any) -> None:
    """An experiment whose numbers went bad: NaN and infinite values, one in a tag too."""
    for step, value in enumerate((math.nan, math.inf, -math.inf, 0.5), start=1):
        ctx.reporter.metric(MetricRecord(name="train_loss", value=value, step=step,
                                         tags={"bound": math.nan if step == 1 else 1.0}))
        ctx.reporter.progress(step, 4, "training")


def test_nonfinite_metrics_are_stored_as_null_and_the_run_succeeds(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "get_experiment", lambda kind: _reports_nonfinite)
    (run,) = record(load_spec_text(theory_spec("nonfinite")), store).runs
    settings = Settings(database_url="sqlite://", runs_dir=tmp_path / "runs",
                        artifact_dir=tmp_path / "artifacts", data_dir=tmp_path / "data")

    finished = runner.execute_run(run.id, store, settings=settings)

    assert finished.status == RunStatus.SUCCEEDED, finished.error
    metrics = sorted(store.metrics(run_id=run.id, name="train_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in metrics] == [(1, None), (2, None), (3, None), (4, 0.5)]
    assert metrics[0].tags == {"bound": None}
