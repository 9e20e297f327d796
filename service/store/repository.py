"""The results store's API: specs, runs, evaluations, metrics, artifacts and checkpoints.

Everything returns plain frozen dataclasses or dicts, never ORM rows, so no caller holds a
session or imports SQLAlchemy. Every method is one transaction through ``ManagedSessions``
(commit or roll back, retry while the database is unreachable, the project's exceptions).
Results are upserted on their stable keys (evaluations and metrics on ``(run_id, key)``,
artifacts on ``(run_id, name)``, checkpoints on ``path``) with the dialect's
``INSERT ... ON CONFLICT DO UPDATE``, so a resumed or re-delivered run leaves no duplicates,
even with two writers racing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contract.records import ArtifactRecord, CheckpointRecord, EvaluationRecord, MetricRecord
from contract.status import PENDING, TERMINAL, RunStatus, pending_sql
from service.settings import Settings, get_settings
from service.store.entities import (
    ArtifactInfo,
    CheckpointInfo,
    MetricInfo,
    NewRun,
    RunInfo,
    SpecInfo,
)
from service.store.migrate import check_schema
from service.store.models import (
    EVALUATION_COLUMNS,
    Artifact,
    Base,
    Checkpoint,
    Evaluation,
    Metric,
    Run,
    Spec,
)
from service.store.rows import (
    RESULT_COLUMNS,
    RESULT_SOURCES,
    RUN_WRITABLE,
    by_prefix,
    checkpoint_values,
    ensure_run,
    evaluation_values,
    info,
    metric_values,
    now,
    progress_values,
    refreshed,
    result_row,
    update_if,
    utc_time,
)
from service.store.session import (
    NO_RETRY,
    DatabaseUnavailable,
    ManagedSessions,
    RetryPolicy,
    RunNotFound,
    SchemaOutOfDate,
    StoreError,
    make_engine,
)
from service.store.storage import LocalStorage, Storage
from service.store.submitter import current_submitter

__all__ = ["CellBusy", "DatabaseUnavailable", "RunNotFound", "SchemaOutOfDate", "Store",
           "StoreError"]
"""The store and the errors it raises (``service.store.session``'s, mapped from the database's)."""

T = TypeVar("T")


class CellBusy(StoreError):
    """A run would become queued or running while another run of its cell is (at most one
    active run per cell: ``ix_runs_active_cell``)."""



class Store:
    """The results database plus the artifact storage, behind plain-object methods.

    Args:
        url: SQLAlchemy URL (SQLite file or PostgreSQL).
        storage: where artifact bytes go; by default ``ROBUSTLAB_ARTIFACT_DIR``.
        check: refuse to open a database whose schema is not the code's (``SchemaOutOfDate``).
        retry: how long to wait out an unreachable database.
    """

    def __init__(self, url: str, *, storage: Storage | None = None, check: bool = True,
                 retry: RetryPolicy | None = None) -> None:
        self.engine: Engine = make_engine(url)
        self.storage: Storage = storage or LocalStorage(get_settings().artifact_dir)
        self._sessions = ManagedSessions(self.engine, retry)
        if check:
            check_schema(self.engine, retry=self._sessions.retry)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Store:
        """The store that ``ROBUSTLAB_*`` describes: database, artifact directory, retries."""
        settings = settings or get_settings()
        retry = RetryPolicy(settings.db_retry_attempts, settings.db_retry_base_delay_s)
        return cls(settings.database_url, storage=LocalStorage(settings.artifact_dir),
                   retry=retry)

    def close(self) -> None:
        """Close the pooled connections (a PostgreSQL database cannot be dropped while open)."""
        self.engine.dispose()

    def probing(self) -> Store:
        """This store trying every action once (no retry), sharing its engine and storage.

        For a caller that already knows the database is down and only asks whether it answers
        again (a run riding out an outage): a retry would stall the science for seconds.
        """
        probe = copy.copy(self)
        probe._sessions = ManagedSessions(self.engine, NO_RETRY)
        return probe

    # ------------------------------------------------------------------ specs and runs

    def add_spec(self, spec_id: str, name: str, kind: str, source_path: str | None,
                 source_yaml: str, spec_json: dict[str, Any],
                 overrides: Sequence[str] = ()) -> None:
        """Record a spec; recording the same spec (same content hash) again changes nothing,
        except that a spec recorded before overrides were kept gains them."""
        values = {"id": spec_id, "name": name, "kind": kind, "source_path": source_path,
                  "source_yaml": source_yaml, "spec": spec_json, "overrides": list(overrides)}

        def work(session: Session) -> None:
            statement = self._insert(Spec).values(values)
            session.execute(statement.on_conflict_do_update(
                index_elements=["id"], set_={"overrides": statement.excluded.overrides},
                where=Spec.__table__.c.overrides.is_(None)))

        self._run(work)

    def specs(self, spec_ids: Sequence[str]) -> list[SpecInfo]:
        """The recorded specs with these ids, oldest first."""
        query = select(Spec).where(Spec.id.in_(list(spec_ids))).order_by(Spec.created_at,
                                                                           Spec.id)
        return self._all(SpecInfo, query)

    def add_runs(self, spec_id: str, runs: Sequence[NewRun]) -> list[RunInfo]:
        """Record queued runs of a spec in one transaction; each comes back as the run now
        active for its cell.

        At most one run per cell (``spec_hash``) is queued or running, whatever the
        concurrency: the insert of a cell that already has one does nothing (the partial
        unique index ``ix_runs_active_cell`` decides, not a check-then-insert), and that
        active run is returned in the new run's place, so a caller tells "recorded" from
        "already there" by the id. Any other conflict (an id taken) records none of them.
        """
        created_at = now()
        submitter = current_submitter()

        def work(session: Session) -> list[RunInfo]:
            ids = []
            for run in runs:
                values = dict(
                    id=run.id, spec_id=spec_id, experiment=run.experiment, kind=run.kind,
                    cell=run.cell, params=run.params, resolved_spec=run.resolved_spec,
                    spec_hash=run.spec_hash, seed=run.seed, queue=run.queue,
                    status=RunStatus.QUEUED.value, progress=0.0, attempts=0,
                    cancel_requested=False, package_versions={}, provenance={},
                    created_at=created_at, submitted_by=run.submitted_by or submitter)
                statement = self._insert(Run).values(values).on_conflict_do_nothing(
                    index_elements=["spec_hash"], index_where=text(pending_sql()),
                ).returning(Run.id)
                if session.execute(statement).scalar_one_or_none() is not None:
                    ids.append(run.id)
                    continue
                active = session.scalars(select(Run.id).where(
                    Run.spec_hash == run.spec_hash,
                    Run.status.in_([status.value for status in PENDING]))).first()
                if active is None:  # it ended between the two statements: record this one
                    session.execute(self._insert(Run).values(values))
                    active = run.id
                ids.append(active)
            session.flush()
            return [info(RunInfo, session.get(Run, run_id)) for run_id in ids]

        return self._run(work)

    def get_run(self, run_id: str) -> RunInfo:
        """The run with this id, or with this unique id prefix (as ``git`` accepts)."""

        def work(session: Session) -> RunInfo:
            row = session.get(Run, run_id)
            if row is None:
                row = by_prefix(session, run_id)
            return info(RunInfo, row)

        return self._run(work)

    def list_runs(self, *, experiment: str | None = None, status: str | None = None,
                  spec_hash: str | None = None, limit: int | None = None) -> list[RunInfo]:
        """Runs, newest first (the cells of one spec in cell order)."""
        query = select(Run).order_by(Run.created_at.desc(), Run.cell, Run.id).limit(limit)
        if experiment is not None:
            query = query.where(Run.experiment == experiment)
        if status is not None:
            query = query.where(Run.status == status)
        if spec_hash is not None:
            query = query.where(Run.spec_hash == spec_hash)
        return self._all(RunInfo, query)

    def mark_running(self, run_id: str, *, host: str | None, device: str | None,
                     git_sha: str | None, package_versions: dict[str, Any],
                     task_id: str | None = None) -> RunInfo:
        """Start (or resume) a run: one more attempt; the first start time is kept."""
        started = now()
        values: dict[str, Any] = {
            "status": RunStatus.RUNNING.value, "attempts": Run.attempts + 1,
            "started_at": func.coalesce(Run.started_at, started), "heartbeat_at": started,
            "finished_at": None, "error": None, "host": host, "device": device,
            "git_sha": git_sha, "package_versions": package_versions,
        }
        if task_id is not None:
            values["task_id"] = task_id
        return self._update_run(run_id, values)

    def set_progress(self, run_id: str, progress: float, stage: str | None = None) -> None:
        """Record progress in [0, 1] (clamped) and a heartbeat; ``stage`` ``None`` keeps it."""
        self._update_run(run_id, progress_values(run_id, progress, stage))

    def heartbeat(self, run_id: str) -> bool:
        """Say the run's process is alive (``heartbeat_at`` now) if it is still running.

        Whether it was: a run finished, cancelled or taken back meanwhile is left alone.
        """
        def work(session: Session) -> bool:
            result = session.execute(
                update(Run).where(Run.id == run_id, Run.status == RunStatus.RUNNING.value)
                .values(heartbeat_at=now()).execution_options(synchronize_session=False))
            return bool(getattr(result, "rowcount", 0))

        return self._run(work)

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> RunInfo:
        """End a run as succeeded, failed or cancelled, with the reason when there is one."""
        if status not in TERMINAL:
            raise ValueError(f"a run finishes as one of {sorted(TERMINAL)}, not {status!r}")
        finished = now()
        return self._update_run(run_id, {"status": RunStatus(status).value, "error": error,
                                         "finished_at": finished,
                                         "heartbeat_at": finished})

    def set_status(self, run_id: str, status: str, **fields: Any) -> RunInfo:
        """Set the status and any other columns, e.g. back to 'queued' with a new task_id.

        The database's check constraint is what rejects an unknown status (``StoreError``).
        """
        unknown = set(fields) - RUN_WRITABLE
        if unknown:
            raise ValueError(f"runs have no writable column(s) {sorted(unknown)}")
        return self._update_run(run_id, {"status": status, **fields})

    def request_cancel(self, run_id: str) -> RunInfo:
        """Cancel a run: a queued one at once, a running one at its next batch boundary.

        Finished runs are left as they are. The conditional updates make this safe against a
        worker picking up the run at the same moment (it checks ``cancel_requested``).
        """

        def work(session: Session) -> RunInfo:
            ensure_run(session, run_id)
            update_if(session, run_id, RunStatus.QUEUED, {
                "status": RunStatus.CANCELLED.value, "cancel_requested": True,
                "finished_at": now(), "error": "cancelled before it started"})
            update_if(session, run_id, RunStatus.RUNNING, {"cancel_requested": True})
            return info(RunInfo, refreshed(session, run_id))

        return self._run(work)

    def cancel_requested(self, run_id: str) -> bool:
        """Whether someone asked this run to stop (polled by the worker between batches)."""

        def work(session: Session) -> bool:
            return ensure_run(session, run_id).cancel_requested

        return self._run(work)

    def add_provenance(self, run_id: str, **facts: Any) -> None:
        """Record facts learnt while running: ``data_hash`` in its column, the rest as JSON."""
        data_hash = facts.get("data_hash")
        extra = {key: value for key, value in facts.items() if key != "data_hash"}

        def work(session: Session) -> None:
            row = ensure_run(session, run_id)
            if data_hash is not None:
                row.data_hash = data_hash
            if extra:
                row.provenance = {**row.provenance, **extra}

        self._run(work)

    def delete_run(self, run_id: str, *, checkpoints: bool = False) -> None:
        """Delete a run with its results and artifact files; its checkpoints' rows stay (their
        ``run_id`` set null) unless ``checkpoints``, which deletes the rows (not the files)."""

        def work(session: Session) -> list[str]:
            row = ensure_run(session, run_id)
            paths = list(session.scalars(select(Artifact.path).where(Artifact.run_id == run_id)))
            if checkpoints:
                session.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id))
            session.delete(row)
            return paths

        for path in self._run(work):
            self.storage.delete(path)

    # ------------------------------------------------------------------ results

    def upsert_evaluation(self, run_id: str, record: EvaluationRecord) -> None:
        """Insert or replace the evaluation with this run and key."""
        self.write_records(run_id, evaluations=[record])

    def upsert_metric(self, run_id: str, record: MetricRecord) -> None:
        """Insert or replace the metric with this run and key (name, step, tags)."""
        self.write_records(run_id, metrics=[record])

    def write_records(self, run_id: str, *, evaluations: Sequence[EvaluationRecord] = (),
                      metrics: Sequence[MetricRecord] = (),
                      checkpoints: Sequence[CheckpointRecord] = (),
                      progress: tuple[float, str | None] | None = None) -> None:
        """Upsert a batch of records, and optionally the run's progress, in ONE transaction.

        The runner calls this at the science's natural boundaries (an epoch's metrics with its
        checkpoint, an evaluation's rows, a progress tick), so a run costs a few commits per
        epoch instead of one per record, and a checkpoint row is never visible without the
        metrics of the epochs it covers. Upsert by ``(run_id, key)`` (checkpoints by path) is
        kept, so a resumed run that writes the same records again leaves no duplicates.
        """
        evaluation_rows = list({row["key"]: row for row in
                                (evaluation_values(run_id, r) for r in evaluations)}.values())
        metric_rows = list({row["key"]: row for row in
                            (metric_values(run_id, r) for r in metrics)}.values())
        checkpoint_rows = list({row["path"]: row for row in
                                (checkpoint_values(run_id, r) for r in checkpoints)}.values())
        run_values = progress_values(run_id, *progress) if progress is not None else None
        if not (evaluation_rows or metric_rows or checkpoint_rows or run_values):
            return

        def work(session: Session) -> None:
            if run_values is not None:
                ensure_run(session, run_id)
            self._upsert_many(session, Evaluation, evaluation_rows, ("run_id", "key"))
            self._upsert_many(session, Metric, metric_rows, ("run_id", "key"))
            self._upsert_many(session, Checkpoint, checkpoint_rows, ("path",))
            if run_values is not None:
                session.execute(update(Run).where(Run.id == run_id).values(run_values)
                                .execution_options(synchronize_session=False))

        self._run(work)

    def add_artifact(self, run_id: str, record: ArtifactRecord) -> ArtifactInfo:
        """Write the bytes to storage at ``<run_id>/<name>`` and upsert their row."""
        path = f"{run_id}/{record.name}"
        digest = self.storage.put(path, record.data)
        values = {"run_id": run_id, "name": record.name, "kind": record.kind, "path": path,
                  "sha256": digest, "media_type": record.media_type, "size": len(record.data),
                  "metadata": record.metadata}

        def work(session: Session) -> ArtifactInfo:
            self._upsert(session, Artifact, values, ("run_id", "name"))
            row = session.scalars(select(Artifact).where(Artifact.run_id == run_id,
                                                         Artifact.name == record.name)).one()
            return info(ArtifactInfo, row)

        return self._run(work)

    def add_checkpoint(self, run_id: str | None, record: CheckpointRecord) -> CheckpointInfo:
        """Upsert a checkpoint's row by its path, with the file's sha256 when it exists."""
        values = checkpoint_values(run_id, record)
        path = values["path"]

        def work(session: Session) -> CheckpointInfo:
            self._upsert(session, Checkpoint, values, ("path",))
            row = session.scalars(select(Checkpoint).where(Checkpoint.path == path)).one()
            return info(CheckpointInfo, row)

        return self._run(work)

    def final_checkpoint(self, run_id: str) -> CheckpointInfo | None:
        """The run's checkpoint marked final, else the one with the highest epoch."""
        query = (select(Checkpoint).where(Checkpoint.run_id == run_id)
                 .order_by(Checkpoint.final.desc(), Checkpoint.epoch.desc(), Checkpoint.id.desc())
                 .limit(1))
        found = self._all(CheckpointInfo, query)
        return found[0] if found else None

    def selected_checkpoint(self, run_id: str) -> CheckpointInfo | None:
        """The checkpoint a run stands for: the best epoch's when its ``training.select``
        chose one (provenance ``selected.checkpoint`` 'best'), else ``final_checkpoint``. What
        ``source: {run: ...}`` evaluates and ``export robustbench`` writes."""
        run = self.get_run(run_id)
        if (run.provenance.get("selected") or {}).get("checkpoint") == "best":
            best = [c for c in self.list_checkpoints(run_id=run.id) if c.metadata.get("best")]
            if best:
                return max(best, key=lambda c: c.id)
        return self.final_checkpoint(run.id)

    def list_checkpoints(self, *, experiment: str | None = None,
                         run_id: str | None = None) -> list[CheckpointInfo]:
        query = select(Checkpoint).order_by(Checkpoint.run_id, Checkpoint.epoch, Checkpoint.id)
        if experiment is not None:
            query = query.join(Run, Run.id == Checkpoint.run_id).where(
                Run.experiment == experiment)
        if run_id is not None:
            query = query.where(Checkpoint.run_id == run_id)
        return self._all(CheckpointInfo, query)

    def results(self, *, experiment: str | None = None, run_ids: Sequence[str] | None = None,
                columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Flat rows, one per evaluation, with the run's experiment, kind and cell.

        Ordered by experiment, cell, model, train_eps, eval_eps, attack (then the remaining
        attack settings, so the order is the same on every backend). ``columns`` asks for just
        those keys (any evaluation column, ``experiment``, ``kind``, ``cell``): a listing of
        10,000 rows then reads no JSON ``checks``/``details`` (a third of its time).
        """
        wanted = list(columns) if columns is not None else None
        if wanted is not None:
            unknown = [name for name in wanted if name not in RESULT_SOURCES]
            if unknown:
                raise ValueError(f"results have no column(s) {unknown}")
        selected = ([RESULT_SOURCES[name] for name in wanted] if wanted is not None
                    else [*RESULT_COLUMNS, Run.experiment, Run.kind, Run.cell])
        query = (
            select(*selected)
            .join(Run, Run.id == EVALUATION_COLUMNS.run_id)
            .order_by(Run.experiment, Run.cell, EVALUATION_COLUMNS.model, EVALUATION_COLUMNS.train_eps,
                      EVALUATION_COLUMNS.eval_eps, EVALUATION_COLUMNS.attack, Run.created_at, Run.id,
                      EVALUATION_COLUMNS.steps.nulls_first(), EVALUATION_COLUMNS.restarts.nulls_first(),
                      EVALUATION_COLUMNS.key)
        )
        if experiment is not None:
            query = query.where(Run.experiment == experiment)
        if run_ids is not None:
            query = query.where(Run.id.in_(list(run_ids)))

        def work(session: Session) -> list[dict[str, Any]]:
            if wanted is None:
                return [result_row(row) for row in session.execute(query).mappings()]
            rows = [dict(zip(wanted, row, strict=True)) for row in session.execute(query)]
            if "created_at" in wanted:
                for row in rows:
                    row["created_at"] = utc_time(row["created_at"])
            return rows

        return self._run(work)

    def per_example(self, run_ids: Sequence[str], columns: Sequence[str] = ("run_id", "key")
                    ) -> list[dict[str, Any]]:
        """The per-example correctness bits (``numpy.packbits``, big-endian) of the runs'
        evaluations that have them: ``columns`` of each row (as ``results`` names them) and
        ``per_example``. What ``compare`` pairs; ``results`` never loads these bytes."""
        unknown = [name for name in columns if name not in RESULT_SOURCES]
        if unknown:
            raise ValueError(f"results have no column(s) {unknown}")
        query = (select(*(RESULT_SOURCES[name] for name in columns), EVALUATION_COLUMNS.per_example)
                 .join(Run, Run.id == EVALUATION_COLUMNS.run_id)
                 .where(EVALUATION_COLUMNS.run_id.in_(list(run_ids)),
                        EVALUATION_COLUMNS.per_example.is_not(None))
                 .order_by(EVALUATION_COLUMNS.run_id, EVALUATION_COLUMNS.key))

        def work(session: Session) -> list[dict[str, Any]]:
            return [dict(zip([*columns, "per_example"], row, strict=True))
                    for row in session.execute(query)]

        return self._run(work)

    def metrics(self, *, run_id: str | None = None, experiment: str | None = None,
                name: str | None = None) -> list[MetricInfo]:
        """Metrics in curve order: by run, name, step."""
        query = select(Metric).order_by(Metric.run_id, Metric.name, Metric.step, Metric.key)
        if run_id is not None:
            query = query.where(Metric.run_id == run_id)
        if experiment is not None:
            query = query.join(Run, Run.id == Metric.run_id).where(Run.experiment == experiment)
        if name is not None:
            query = query.where(Metric.name == name)
        return self._all(MetricInfo, query)

    def artifacts(self, *, run_id: str | None = None, experiment: str | None = None,
                  kind: str | None = None) -> list[ArtifactInfo]:
        query = select(Artifact).order_by(Artifact.run_id, Artifact.name)
        if run_id is not None:
            query = query.where(Artifact.run_id == run_id)
        if experiment is not None:
            query = query.join(Run, Run.id == Artifact.run_id).where(
                Run.experiment == experiment)
        if kind is not None:
            query = query.where(Artifact.kind == kind)
        return self._all(ArtifactInfo, query)

    # ------------------------------------------------------------------ plumbing

    def _run(self, work: Callable[[Session], T]) -> T:
        return self._sessions.run(work)

    def _all(self, cls: type[T], query: Select[Any]) -> list[T]:
        return self._run(lambda session: [info(cls, row) for row in session.scalars(query)])

    def _update_run(self, run_id: str, values: dict[str, Any]) -> RunInfo:
        def work(session: Session) -> RunInfo:
            row = ensure_run(session, run_id)
            if values.get("status") in PENDING:
                other = session.scalars(select(Run.id).where(
                    Run.spec_hash == row.spec_hash, Run.id != row.id,
                    Run.status.in_([status.value for status in PENDING]))).first()
                if other is not None:  # the index would refuse it; say why in one line
                    raise CellBusy(f"run {other} of the same cell is already queued or "
                                   f"running; cancel it first or wait for it (run {row.id})")
            session.execute(update(Run).where(Run.id == run_id).values(values)
                            .execution_options(synchronize_session=False))
            return info(RunInfo, refreshed(session, run_id))

        return self._run(work)

    def _insert(self, model: type[Base]) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_update`` on SQLite and PostgreSQL."""
        dialect = sqlite if self.engine.dialect.name == "sqlite" else postgresql
        return dialect.insert(model.__table__)

    def _upsert_many(self, session: Session, model: type[Base], rows: Sequence[dict[str, Any]],
                     keys: Sequence[str]) -> None:
        """``_upsert`` of many rows with the same columns, as one executemany statement."""
        if not rows:
            return
        statement = self._insert(model)
        changes = {column: statement.excluded[column] for column in rows[0] if column not in keys}
        session.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=changes),
                        list(rows))

    def _upsert(self, session: Session, model: type[Base], values: dict[str, Any],
                keys: Sequence[str]) -> None:
        """INSERT, or UPDATE every non-key column of the row that has the same ``keys``."""
        statement = self._insert(model).values(values)
        changes = {column: statement.excluded[column] for column in values if column not in keys}
        session.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=changes))


