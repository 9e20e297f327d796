"""`runs delete` and `runs prune` on SQLite and PostgreSQL, through the real CLI.

Rows, metrics, artifacts, checkpoint files and run directories go; other runs are untouched;
a checkpoint another run reads is kept and said so; a running run needs --force; without a
terminal, --yes is required.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contract.specs.loading import load_spec_text
from service.recording import record
from service.runner import execute_run
from service.settings import Settings
from service.store import migrate
from service.store.repository import RunNotFound, Store
from tests.service.test_cli import robustlab

TRAIN = """\
name: doomed
kind: train
device: cpu
dataset: {name: mnist, train_subset: 100, test_subset: 50}
model: {arch: linear}
training: {epochs: 2, batch_size: 50, optimizer: {name: adam, lr: 1e-3, weight_decay: 0}}
evaluation: {checks: false}
"""
THEORY = """\
name: {name}
kind: theory
device: cpu
n_train: 100
n_test: 100
epochs: 5
distribution: {{p: 0.7, d: 10, eta: 0.5}}
models: [averaging]
"""


@pytest.fixture
def lab(database_url: str, tmp_path: Path, mnist_data_dir: Path
        ) -> tuple[Store, dict[str, str], Path, Settings]:
    migrate.upgrade(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    env.update({"ROBUSTLAB_DATABASE_URL": database_url,
                "ROBUSTLAB_RUNS_DIR": str(tmp_path / "runs"),
                "ROBUSTLAB_ARTIFACT_DIR": str(tmp_path / "artifacts"),
                "ROBUSTLAB_DATA_DIR": str(mnist_data_dir)})
    settings = Settings(database_url=database_url, runs_dir=tmp_path / "runs",
                        artifact_dir=tmp_path / "artifacts", data_dir=mnist_data_dir)
    return Store.from_settings(settings), env, tmp_path, settings


def run(store: Store, settings: Settings, text: str) -> str:
    (item,) = record(load_spec_text(text), store).runs
    assert execute_run(item.id, store, settings=settings).status == "succeeded"
    return item.id


def test_delete_removes_everything_of_a_run_and_keeps_a_checkpoint_others_read(
        lab: tuple[Store, dict[str, str], Path, Settings]) -> None:
    store, env, tmp, settings = lab
    trained = run(store, settings, TRAIN)
    bystander = run(store, settings, THEORY.format(name="bystander"))
    final = store.final_checkpoint(trained)
    assert final is not None
    reader = run(store, settings, f"name: reader\nkind: evaluate\ndevice: cpu\n"
                 f"source: {{checkpoint: {final.path}}}\nevaluation: {{checks: false}}\n")
    first = next(c.path for c in store.list_checkpoints(run_id=trained) if c.epoch == 1)
    done = robustlab("runs", "delete", trained, "--yes", cwd=tmp, env=env)
    assert done.returncode == 0, done.stderr
    assert f"kept {final.path}: another run reads this checkpoint" in done.stderr
    with pytest.raises(RunNotFound):
        store.get_run(trained)
    assert store.results(run_ids=[trained]) == [] and store.metrics(run_id=trained) == []
    assert store.list_checkpoints(run_id=trained) == []
    assert Path(final.path).is_file() and not Path(first).exists()
    for other in (bystander, reader):
        assert store.get_run(other).status == "succeeded" and store.results(run_ids=[other])
    assert store.artifacts(run_id=bystander)


def test_delete_asks_for_yes_without_a_terminal_and_refuses_a_running_run(
        lab: tuple[Store, dict[str, str], Path, Settings]) -> None:
    store, env, tmp, settings = lab
    done = run(store, settings, THEORY.format(name="kept"))
    refused = robustlab("runs", "delete", done, cwd=tmp, env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert store.get_run(done).status == "succeeded"
    (queued,) = record(load_spec_text(THEORY.format(name="waiting")), store).runs
    busy = robustlab("runs", "delete", queued.id, "--yes", cwd=tmp, env=env)
    assert busy.returncode == 2 and "--force" in busy.stderr
    forced = robustlab("runs", "delete", queued.id, "--yes", "--force", cwd=tmp, env=env)
    assert forced.returncode == 0, forced.stderr
    with pytest.raises(RunNotFound):
        store.get_run(queued.id)


def test_prune_deletes_failed_runs_only(
        lab: tuple[Store, dict[str, str], Path, Settings]) -> None:
    store, env, tmp, settings = lab
    good = run(store, settings, THEORY.format(name="good"))
    (bad,) = record(load_spec_text(THEORY.format(name="bad")), store).runs
    store.finish_run(bad.id, "failed", error="a reason")
    pruned = robustlab("runs", "prune", "--status", "failed", "--yes", cwd=tmp, env=env)
    assert pruned.returncode == 0, pruned.stderr
    listed = json.loads(robustlab("runs", "--format", "json", cwd=tmp, env=env).stdout)
    assert [r["id"] for r in listed] == [good]
    again = robustlab("runs", "prune", "--status", "failed", "--older-than", "7d", "--yes",
                      cwd=tmp, env=env)
    assert again.returncode == 0 and "nothing to prune" in again.stdout
    wrong = robustlab("runs", "prune", "--status", "failed", "--older-than", "soon", "--yes",
                      cwd=tmp, env=env)
    assert wrong.returncode == 2 and "--older-than" in wrong.stderr
