"""``robustlab export mlflow`` against a real local MLflow tracking store (SQLite backend).

Two robustlab runs are exported twice through the real command; MLflow's own ``search_runs``
must then find each exactly once, with the spec as params, metrics folded with their tags,
evaluation rows as metrics, the artifact, and the provenance as tags.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.results_seed import ACCURACY, LOSSES, Seeded, seed_two_runs

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="needs robustlab[mlflow]")

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"


def export(seeded: Seeded, tracking_uri: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([ROBUSTLAB, "export", "mlflow", "--tracking-uri", tracking_uri,
                             "--experiment", "fig1_small"], env=seeded.env(),
                            cwd=seeded.artifact_dir.parent, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_two_exports_leave_each_run_once_with_everything(tmp_path: Path) -> None:
    seeded = seed_two_runs(tmp_path)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = export(seeded, tracking_uri)
    assert first.stdout.count(" created: ") == 2
    second = export(seeded, tracking_uri)
    assert second.stdout.count(" updated: ") == 2 and " created: " not in second.stdout

    client = mlflow_tracking.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("fig1_small")
    assert experiment is not None
    for run_id, eps in ((seeded.standard, 0.0), (seeded.robust, 0.3)):
        found = client.search_runs([experiment.experiment_id],
                                   filter_string=f"tags.`robustlab.run_id` = '{run_id}'")
        assert len(found) == 1, f"{run_id}: {len(found)} MLflow runs"
        run = found[0]
        assert run.info.status == "FINISHED"
        assert run.data.params["adversary.eps"] == f"{eps:g}"
        assert run.data.params["evaluation.attacks.0.steps"] == "20"
        assert run.data.tags["robustlab.data_hash"] == f"sha-{eps}"
        assert run.data.tags["robustlab.provenance.data_files"] == '{"mnist": "train.npz"}'
        assert run.data.metrics["weight_l1/layer:fc"] == pytest.approx(10 + eps)
        assert run.data.metrics["accuracy/mnist/test/mnist_cnn/train:linf:"
                                f"{eps:g}/pgd/linf:0.3/steps:20"] == pytest.approx(
                                    ACCURACY[(eps, 0.3)])
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (1, LOSSES[eps][0]), (2, LOSSES[eps][1]), (3, LOSSES[eps][2])]  # not doubled
        (artifact,) = client.list_artifacts(run.info.run_id, "figure")
        assert artifact.path == "figure/curve.png"
    assert len(client.search_runs([experiment.experiment_id])) == 2
