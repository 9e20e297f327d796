"""Export robustlab runs to an MLflow tracking server or store (``robustlab export mlflow``).

Each robustlab run becomes one MLflow run, in an MLflow experiment of the same name:

- params: the flattened resolved spec (``adversary.eps``, ``evaluation.attacks.0.steps``);
- metrics: every metric, its tags folded into the key (``weight_l1/layer:fc``), every step;
  every evaluation row as ``accuracy/<dataset>/<split>/<model>/...`` (its identity folded in);
- artifacts: the run's files, under ``<kind>/<name>``;
- tags: the provenance (spec hash, seed, git sha, host, device, data hash, package versions,
  the rest of ``provenance``) as ``robustlab.*``, and MLflow's own ``mlflow.source.git.commit``.

Idempotent: the MLflow run carries the tag ``robustlab.run_id``; exporting again finds it by
that tag and updates it (metrics are logged with their stored timestamps, so an unchanged value
is not logged twice), never creating a second run. Needs the optional extra
``robustlab[mlflow]`` (mlflow-skinny); nothing else in robustlab imports MLflow.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.entities import RunStatus as MlflowStatus
from mlflow.tracking import MlflowClient

from contract.status import RunStatus
from service.analysis.compare import flatten
from service.store.entities import ArtifactInfo, MetricInfo, RunInfo
from service.store.repository import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

RUN_ID_TAG = "robustlab.run_id"
"""The tag that ties an MLflow run to its robustlab run (what makes re-export idempotent)."""

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
BATCH = 100
"""Params and tags per ``log_batch`` (MLflow's limit; 1,000 for metrics)."""
METRIC_BATCH = 1000

_STATUS = {
    RunStatus.SUCCEEDED: MlflowStatus.to_string(MlflowStatus.FINISHED),
    RunStatus.FAILED: MlflowStatus.to_string(MlflowStatus.FAILED),
    RunStatus.CANCELLED: MlflowStatus.to_string(MlflowStatus.KILLED),
    RunStatus.INTERRUPTED: MlflowStatus.to_string(MlflowStatus.KILLED),
}
"""robustlab's ended statuses in MLflow's words; queued and running runs stay RUNNING."""
_BAD_KEY_CHARACTERS = re.compile(r"[^/\w.\- :]")


@dataclass(frozen=True)
class Exported:
    """What one run's export did."""

    run_id: str
    mlflow_run_id: str
    mlflow_experiment_id: str
    created: bool
    """False when an MLflow run with this robustlab run's tag existed and was updated."""
    params: int
    metrics: int
    artifacts: int


# --------------------------------------------------------------------------- keys


def metric_key(*parts: str) -> str:
    """An MLflow-valid key: characters MLflow refuses become ``_``, empty parts dropped."""
    text = "/".join(_BAD_KEY_CHARACTERS.sub("_", part.strip()) for part in parts if part.strip())
    text = re.sub(r"/+", "/", text).strip("/")
    return "/".join(segment if segment not in {".", ".."} else f"_{segment}"
                    for segment in text.split("/"))[:MAX_KEY]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def folded_metric_key(name: str, tags: Mapping[str, Any]) -> str:
    """``name/k:v/k:v`` with the tags sorted: one MLflow metric per robustlab series."""
    return metric_key(name, *(f"{key}:{_text(tags[key])}" for key in sorted(tags)))


def evaluation_key(row: Mapping[str, Any]) -> str:
    """``accuracy/<dataset>/<split>/<model>/train:<norm>:<eps>/<attack>/<norm>:<eps>/...``."""
    parts = ["accuracy", row.get("dataset") or "", row.get("split") or "", row.get("model") or ""]
    if row.get("train_norm") or row.get("train_eps"):
        parts.append(f"train:{row.get('train_norm') or 'none'}:{_text(row.get('train_eps'))}")
    if row.get("train_method"):
        parts.append(f"method:{row['train_method']}")
    parts.append(row.get("attack") or "none")
    if row.get("eval_norm") or row.get("eval_eps"):
        parts.append(f"{row.get('eval_norm') or 'none'}:{_text(row.get('eval_eps'))}")
    for field in ("steps", "step_size", "restarts"):
        if row.get(field) is not None:
            parts.append(f"{field}:{_text(row[field])}")
    if row.get("variant"):
        parts.append(f"variant:{row['variant']}")
    return metric_key(*parts)


# --------------------------------------------------------------------------- entities


def _millis(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def run_params(run: RunInfo) -> list[Param]:
    """The flattened resolved spec; keys as the spec writes them, values as text."""
    return [Param(metric_key(path)[:MAX_KEY], _text(value)[:MAX_PARAM_VALUE])
            for path, value in sorted(flatten(run.resolved_spec).items())]


def run_tags(run: RunInfo) -> list[RunTag]:
    """Provenance as ``robustlab.*`` tags, plus MLflow's run name and git commit tags."""
    tags: dict[str, Any] = {
        RUN_ID_TAG: run.id, "robustlab.experiment": run.experiment,
        "robustlab.kind": run.kind, "robustlab.cell": run.cell, "robustlab.status": run.status,
        "robustlab.spec_hash": run.spec_hash, "robustlab.seed": run.seed,
        "robustlab.sweep": " ".join(f"{k}={_text(v)}" for k, v in run.params.items()),
        "robustlab.git_sha": run.git_sha, "robustlab.host": run.host,
        "robustlab.device": run.device, "robustlab.data_hash": run.data_hash,
        "mlflow.runName": f"{run.experiment}/{run.cell}/{run.id}",
    }
    if run.git_sha:
        tags["mlflow.source.git.commit"] = run.git_sha.removesuffix("-dirty")
    tags |= {f"robustlab.package.{name}": version
             for name, version in run.package_versions.items()}
    tags |= {f"robustlab.provenance.{key}": value for key, value in run.provenance.items()}
    if run.error:
        tags["robustlab.error"] = run.error
    return [RunTag(key[:MAX_KEY], _text(value)[:MAX_TAG_VALUE]) for key, value in tags.items()
            if value not in (None, "")]


def run_metrics(run: RunInfo, metrics: Iterable[MetricInfo],
                results: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Every metric value (tags folded into the key) and every evaluation row's accuracy.

    Timestamps are the records' own, so logging the same values again changes nothing.
    """
    fallback = _millis(run.finished_at or run.started_at or run.created_at) or 0
    out = [Metric(folded_metric_key(m.name, m.tags), float(m.value),
                  _millis(m.created_at) or fallback, int(m.step)) for m in metrics
           if m.value is not None]  # null: NaN or infinite when measured, which MLflow refuses
    seen: dict[str, int] = {}
    for row in results:
        key = evaluation_key(row)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:  # two rows whose identities sanitise alike: keep both
            key = metric_key(key, str(seen[key]))
        out.append(Metric(key, float(row["accuracy"]),
                          _millis(row.get("created_at")) or fallback, 0))
    return out


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --------------------------------------------------------------------------- export


class MlflowExporter:
    """Writes robustlab runs into one MLflow tracking URI (a server, ``sqlite:///``, a folder)."""

    def __init__(self, store: Store, tracking_uri: str) -> None:
        self.store = store
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._experiments: dict[str, str] = {}

    def experiment_id(self, name: str) -> str:
        """The MLflow experiment called ``name``, created on first use."""
        if name not in self._experiments:
            found = self.client.get_experiment_by_name(name)
            self._experiments[name] = (found.experiment_id if found is not None
                                       else self.client.create_experiment(name))
        return self._experiments[name]

    def find(self, experiment_id: str, run_id: str) -> Any | None:
        """The MLflow run tagged with this robustlab run id, if there is one (at most one)."""
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'", max_results=2)
        if len(found) > 1:
            log.warning("%d MLflow runs carry %s=%s; updating the first", len(found),
                        RUN_ID_TAG, run_id)
        return found[0] if found else None

    def export(self, run: RunInfo, *, experiment: str | None = None) -> Exported:
        """Create or update the MLflow run of ``run``; returns what was written."""
        experiment_id = self.experiment_id(experiment or run.experiment)
        existing = self.find(experiment_id, run.id)
        tags = run_tags(run)
        if existing is None:
            mlflow_run = self.client.create_run(
                experiment_id, start_time=_millis(run.started_at or run.created_at),
                tags={tag.key: tag.value for tag in tags})
            mlflow_id, logged_params = mlflow_run.info.run_id, {}
        else:
            mlflow_id, logged_params = existing.info.run_id, dict(existing.data.params)
        # MLflow params are write-once: log only the new ones (a run's spec never changes).
        params = [p for p in run_params(run) if p.key not in logged_params]
        metrics = run_metrics(run, self.store.metrics(run_id=run.id),
                              self.store.results(run_ids=[run.id]))
        for params_chunk in _chunks(params, BATCH):
            self.client.log_batch(mlflow_id, params=list(params_chunk))
        for tags_chunk in _chunks(tags, BATCH):
            self.client.log_batch(mlflow_id, tags=list(tags_chunk))
        for metrics_chunk in _chunks(metrics, METRIC_BATCH):
            self.client.log_batch(mlflow_id, metrics=list(metrics_chunk))
        artifacts = self.store.artifacts(run_id=run.id)
        for artifact in artifacts:
            self._log_artifact(mlflow_id, artifact)
        status = _STATUS.get(RunStatus(run.status))
        if status is not None:
            self.client.set_terminated(mlflow_id, status=status,
                                       end_time=_millis(run.finished_at))
        return Exported(run.id, mlflow_id, experiment_id, existing is None, len(params),
                        len(metrics), len(artifacts))

    def _log_artifact(self, mlflow_id: str, artifact: ArtifactInfo) -> None:
        path = self.store.storage.local_path(artifact.path)
        if path is None or not path.is_file():
            log.warning("artifact %s of run %s is not on this disk: not exported",
                        artifact.path, artifact.run_id)
            return
        folder = metric_key(artifact.kind, *artifact.name.split("/")[:-1]) or None
        self.client.log_artifact(mlflow_id, str(path), artifact_path=folder)


def export_runs(store: Store, tracking_uri: str, *, experiment: str | None = None,
                run_ids: Sequence[str] = (), mlflow_experiment: str | None = None
                ) -> list[Exported]:
    """Export the runs of ``experiment`` (or the given ones, or every run), oldest first."""
    if run_ids:
        runs = [store.get_run(run_id) for run_id in run_ids]
    else:
        runs = list(reversed(store.list_runs(experiment=experiment)))
    exporter = MlflowExporter(store, tracking_uri)
    return [exporter.export(run, experiment=mlflow_experiment) for run in runs]
