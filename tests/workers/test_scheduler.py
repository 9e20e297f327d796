"""Standing evaluations: registering them, what counts as a new checkpoint, and scans that
enqueue each (schedule, checkpoint) once, also when several scanners race and with a real beat.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from contract.records import CheckpointRecord
from contract.specs.loading import SpecError
from service import scheduler
from service.settings import Settings
from service.store import migrate
from service.store.entities import NewRun
from service.store.models import Base
from service.store.repository import Store
from service.store.scheduling import ScheduleNotFound, Schedules
from service.store.session import make_engine
from tests.workers.conftest import settings_of
from tests.workers.helpers import (
    Processes,
    closed_port,
    evaluate_spec,
    queue_length,
    robustlab,
    theory_spec,
    wait_for,
)

HOUR_AGO = time.time() - 3600


def _checkpoint_files(directory: Path, *names: str, mtime: float = HOUR_AGO) -> list[str]:
    """Files that look like checkpoints to a scan (contents are never read when queueing)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = directory / name
        path.write_bytes(b"not read by the scheduler")
        os.utime(path, (mtime, mtime))
        paths.append(str(path.resolve()))
    return paths


@pytest.fixture
def eval_spec(tmp_path: Path) -> Path:
    path = tmp_path / "standing.yaml"
    path.write_text(evaluate_spec("standing"))
    return path


@pytest.fixture
def local_store(database_url: str) -> Iterator[Store]:
    """A migrated store, on SQLite and on PostgreSQL."""
    migrate.upgrade(database_url)
    opened = Store(database_url)
    yield opened
    opened.close()


# --------------------------------------------------------------------------- the tables


def test_migration_0002_creates_exactly_the_schedule_tables(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert {"schedules", "schedule_coverage"} <= set(inspect(engine).get_table_names())
        engine.dispose()
        migrate.downgrade(database_url, "0001")
        assert not {"schedules", "schedule_coverage"} & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == migrate.head_revision()


def test_a_schedule_is_registered_once_listed_and_removed(
        local_store: Store, eval_spec: Path, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    added, created = scheduler.add(local_store, eval_spec, ["evaluation.subset=10"],
                                   watch=watched)
    again, created_again = scheduler.add(local_store, eval_spec, ["evaluation.subset=10"],
                                         watch=watched)
    other, _ = scheduler.add(local_store, eval_spec, checkpoints_of="some_experiment")

    assert (created, created_again, again.id) == (True, False, added.id)
    assert (added.target_kind, added.target) == ("watch", str(watched.resolve()))
    assert added.spec["source"]["checkpoint"] == scheduler.PLACEHOLDER
    assert added.spec["evaluation"]["subset"] == 10 and added.overrides == ["evaluation.subset=10"]
    schedules = Schedules(local_store)
    assert [(s.id, s.covered) for s in schedules.all()] == [(added.id, 0), (other.id, 0)]
    schedules.remove(added.id)
    assert [s.id for s in schedules.all()] == [other.id]
    with pytest.raises(ScheduleNotFound):
        schedules.remove(added.id)


def test_only_evaluate_specs_and_existing_directories_can_be_scheduled(
        local_store: Store, tmp_path: Path, eval_spec: Path) -> None:
    theory = tmp_path / "theory.yaml"
    theory.write_text(theory_spec("not_an_evaluation"))
    with pytest.raises(SpecError, match="needs an 'evaluate' spec, not 'theory'"):
        scheduler.add(local_store, theory, watch=tmp_path)
    with pytest.raises(FileNotFoundError, match="no directory"):
        scheduler.add(local_store, eval_spec, watch=tmp_path / "missing")
    with pytest.raises(ValueError, match="exactly one"):
        scheduler.add(local_store, eval_spec)


# --------------------------------------------------------------------------- candidates


def test_a_watched_directory_offers_settled_visible_pt_files(
        local_store: Store, eval_spec: Path, tmp_path: Path) -> None:
    directory = tmp_path / "watched"
    old = _checkpoint_files(directory, "b.pt", "a.pt")
    _checkpoint_files(directory, ".hidden.pt", "epoch-0003.pt.tmp", "notes.txt")
    fresh = _checkpoint_files(directory, "fresh.pt", mtime=time.time())
    info, _ = scheduler.add(local_store, eval_spec, watch=directory)
    schedules = Schedules(local_store)

    assert sorted(scheduler.candidates(schedules, info)) == sorted(old)
    assert sorted(scheduler.candidates(schedules, info, settle_s=0)) == sorted(old + fresh)


def test_an_experiment_offers_final_checkpoints_of_succeeded_runs_only(
        local_store: Store, eval_spec: Path, tmp_path: Path) -> None:
    local_store.add_spec("spec", "trainer", "train", None, "", {})
    recorded = local_store.add_runs("spec", [
        NewRun(id=f"run{i}", experiment="trainer", kind="train", cell=i, params={},
               resolved_spec={}, spec_hash=f"h{i}", seed=0) for i in range(3)])
    for run, status in zip(recorded, ("succeeded", "failed", "running"), strict=True):
        for epoch in (1, 2):
            local_store.add_checkpoint(run.id, CheckpointRecord(
                path=tmp_path / run.id / f"epoch-{epoch}.pt", epoch=epoch, arch="linear",
                dataset="mnist", train_norm="linf", train_eps=0.0, final=epoch == 2))
        if status == "running":
            local_store.mark_running(run.id, host=None, device=None, git_sha=None,
                                     package_versions={})
        else:
            local_store.finish_run(run.id, status)
    info, _ = scheduler.add(local_store, eval_spec, checkpoints_of="trainer")

    assert scheduler.candidates(Schedules(local_store), info) == [
        str(tmp_path / "run0" / "epoch-2.pt")]


# --------------------------------------------------------------------------- scans


@pytest.mark.redis
@pytest.mark.postgres
def test_racing_scanners_enqueue_each_checkpoint_once(
        env: dict[str, str], store: Store, eval_spec: Path, tmp_path: Path) -> None:
    settings = settings_of(env)
    directory = tmp_path / "watched"
    paths = _checkpoint_files(directory, *(f"epoch-{i}.pt" for i in range(1, 5)))
    first, _ = scheduler.add(store, eval_spec, watch=directory, settings=settings)
    second, _ = scheduler.add(store, eval_spec, ["evaluation.subset=50"], watch=directory,
                              settings=settings)
    scanners = 4
    barrier = threading.Barrier(scanners)
    reports: list[scheduler.ScanReport] = []
    failures: list[BaseException] = []

    def scan() -> None:
        barrier.wait()
        try:
            reports.append(scheduler.scan(store, settings=settings))
        except BaseException as exc:  # re-raised in the test thread below
            failures.append(exc)

    threads = [threading.Thread(target=scan) for _ in range(scanners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not failures, failures
    taken = Counter((s.schedule_id, s.checkpoint) for r in reports for s in r.submitted)
    assert taken == Counter({(schedule.id, path): 1
                             for schedule in (first, second) for path in paths})
    runs = store.list_runs(experiment="standing")
    assert len(runs) == 8 and {run.status for run in runs} == {"queued"}
    assert sorted(run.resolved_spec["source"]["checkpoint"] for run in runs) == sorted(paths * 2)
    assert queue_length(env["ROBUSTLAB_BROKER_URL"], "gpu") == 8
    assert [s.covered for s in Schedules(store).all()] == [4, 4]
    assert scheduler.scan(store, settings=settings).submitted == []


@pytest.mark.redis
@pytest.mark.postgres
def test_a_scan_with_the_broker_down_gives_its_claims_back(
        env: dict[str, str], store: Store, eval_spec: Path, tmp_path: Path) -> None:
    settings = settings_of(env)
    (path,) = _checkpoint_files(tmp_path / "watched", "model.pt")
    info, _ = scheduler.add(store, eval_spec, watch=tmp_path / "watched", settings=settings)
    down = Settings(**{**settings.model_dump(),
                       "broker_url": f"redis://127.0.0.1:{closed_port()}/0"})

    failed = scheduler.scan(store, settings=down)

    assert failed.submitted == [] and "no broker at" in failed.errors[0]
    assert Schedules(store).covered(info.id) == set() and store.list_runs() == []
    (done,) = scheduler.scan(store, settings=settings).submitted
    assert done.checkpoint == path


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_beat_enqueues_one_evaluation_per_new_checkpoint(
        env: dict[str, str], store: Store, processes: Processes, eval_spec: Path,
        tmp_path: Path) -> None:
    directory = tmp_path / "watched"
    directory.mkdir()
    added = robustlab("schedule", "add", str(eval_spec), "--watch", str(directory), env=env,
                      cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("schedule 1: standing evaluates every new *.pt in")
    first = _checkpoint_files(directory, "epoch-1.pt", "epoch-2.pt")
    beat = processes.start("beat", "--interval", "1")
    beat.wait_ready()

    def evaluated() -> list[str]:
        return sorted(run.resolved_spec["source"]["checkpoint"]
                      for run in store.list_runs(experiment="standing"))

    wait_for(lambda: evaluated() == sorted(first), 120, "the beat to queue the first two")
    (third,) = _checkpoint_files(directory, "epoch-3.pt")
    wait_for(lambda: evaluated() == sorted([*first, third]), 60, "the beat to queue the third")
    scans = beat.output().count("robustlab.scan_schedules")
    wait_for(lambda: beat.output().count("robustlab.scan_schedules") >= scans + 6, 60,
             "three more scans")

    assert evaluated() == sorted([*first, third])
    assert queue_length(env["ROBUSTLAB_BROKER_URL"], "gpu") == 3
    listed = robustlab("schedule", "list", "--format", "json", env=env, cwd=tmp_path)
    assert [(s["id"], s["covered"]) for s in json.loads(listed.stdout)] == [(1, 3)]
