"""One run over several processes, through the real CLI and real ``torchrun`` processes.

On the CPU with gloo, two ranks of one thread each: a 2-process training records every
metric step and every result once and learns like a 1-process run of the same spec; a
SIGKILLed rank fails the run with its rank and reason, and ``resume`` continues it with one
process; two "nodes" on localhost meet through the rendezvous; a worker started with
``--nproc-per-node 2`` runs a queued run over two processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from service.launch import free_port
from service.store import migrate
from service.store.repository import Store
from tests.workers.conftest import queue_env
from tests.workers.helpers import ROBUSTLAB, Processes, flush_redis, robustlab, wait_for

pytestmark = pytest.mark.slow

SPEC = """\
name: {name}
kind: train
device: cpu
dataset: {{name: mnist, train_subset: {n}, test_subset: 200}}
model: {{arch: mnist_cnn}}
training:
  epochs: {epochs}
  batch_size: 20
  optimizer: {{name: adam, lr: 1e-3, weight_decay: 0}}
adversary: {{norm: linf, eps: 0.1, steps: 2, step_size: 0.05}}
evaluation:
  batch_size: 50
  attacks:
    - {{kind: pgd, norm: linf, eps: 0.1, steps: 3, step_size: 0.05}}
  checks: false
checkpoint_every: 1
"""


def spec(tmp: Path, name: str, *, epochs: int = 2, n: int = 600) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, epochs=epochs, n=n))
    return path


@pytest.fixture
def lab(tmp_path: Path, mnist_data_dir: Path) -> tuple[Path, dict[str, str], Store]:
    url = f"sqlite:///{tmp_path / 'robustlab.db'}"
    migrate.upgrade(url)
    env = queue_env(url, "redis://127.0.0.1:6379/15", tmp_path, mnist_data_dir)
    return tmp_path, env, Store(url)


def runs_json(env: dict[str, str], cwd: Path) -> list[dict]:
    return json.loads(robustlab("runs", "--format", "json", env=env, cwd=cwd).stdout)


def test_two_processes_record_everything_once_and_learn_like_one(
        lab: tuple[Path, dict[str, str], Store]) -> None:
    tmp, env, store = lab
    one = robustlab("run", str(spec(tmp, "alone")), env=env, cwd=tmp)
    assert one.returncode == 0, one.stderr
    two = robustlab("run", str(spec(tmp, "pair")), "--nproc-per-node", "2", env=env, cwd=tmp)
    assert two.returncode == 0, two.stderr[-2000:]
    runs = {run["experiment"]: run for run in runs_json(env, tmp)}
    assert (runs["pair"]["world_size"], runs["pair"]["nnodes"], runs["pair"]["backend"]) == \
        (2, 1, "gloo")
    assert (runs["alone"]["world_size"], runs["alone"]["backend"]) == (1, None)
    assert runs["pair"]["spec_hash"] != runs["alone"]["spec_hash"]  # only the names differ
    metrics = store.metrics(run_id=runs["pair"]["id"])
    counts = Counter((m.name, json.dumps(m.tags, sort_keys=True), m.step) for m in metrics)
    assert counts and set(counts.values()) == {1}
    assert sorted(m.step for m in metrics if m.name == "train_loss") == [1, 2]
    rows = {run: {(r["attack"], r["eval_eps"]): r for r in store.results(run_ids=[runs[run]["id"]])}
            for run in ("alone", "pair")}
    assert len(store.results(run_ids=[runs["pair"]["id"]])) == len(rows["pair"]) == 3
    for key, row in rows["alone"].items():
        assert row["n"] == rows["pair"][key]["n"] == 200
        assert abs(row["accuracy"] - rows["pair"][key]["accuracy"]) < 0.06, key
    assert rows["pair"][("none", 0.0)]["accuracy"] > 0.7
    assert len(store.list_checkpoints(run_id=runs["pair"]["id"])) == 2


def rank_pids(rank: int) -> list[int]:
    """Processes of ``service.rank`` whose environment says RANK=rank."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"service.rank" in command and f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_a_killed_rank_fails_the_run_and_one_process_resumes_it(
        lab: tuple[Path, dict[str, str], Store]) -> None:
    tmp, env, store = lab
    started = time.monotonic()
    process = subprocess.Popen(
        [ROBUSTLAB, "run", str(spec(tmp, "killed", epochs=4, n=1000)), "--nproc-per-node", "2"],
        env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = wait_for(lambda: next(iter(store.list_runs(experiment="killed")), None), 120,
                       "the run to be recorded")
        wait_for(lambda: store.list_checkpoints(run_id=run.id), 180, "a first checkpoint",
                 interval=0.1)
        victims = wait_for(lambda: rank_pids(1), 30, "rank 1's process")
        os.kill(victims[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - killed_at < 60
    assert process.returncode != 0
    failed = store.get_run(run.id)
    assert failed.status == "failed", failed
    assert "rank 1" in (failed.error or "") and "SIGKILL" in (failed.error or "")
    assert "robustlab resume" in (failed.error or "")
    assert not rank_pids(0) and not rank_pids(1)  # no process left behind
    assert time.monotonic() - started < 400
    resumed = robustlab("resume", run.id, env=env, cwd=tmp)  # one process now
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = store.get_run(run.id)
    assert done.status == "succeeded"
    epochs = sorted(c.epoch for c in store.list_checkpoints(run_id=run.id))
    assert epochs == [1, 2, 3, 4]
    losses = [m.step for m in store.metrics(run_id=run.id) if m.name == "train_loss"]
    assert sorted(losses) == [1, 2, 3, 4]


def test_two_nodes_meet_at_a_rendezvous_on_localhost(
        lab: tuple[Path, dict[str, str], Store]) -> None:
    tmp, env, store = lab
    path = spec(tmp, "nodes")
    endpoint = f"127.0.0.1:{free_port()}"
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", endpoint]
    node1 = subprocess.Popen([ROBUSTLAB, "run", str(path), *common, "--node-rank", "1"],
                             env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    node0 = subprocess.run([ROBUSTLAB, "run", str(path), *common, "--node-rank", "0"], env=env,
                           cwd=tmp, capture_output=True, text=True, timeout=300)
    out1, err1 = node1.communicate(timeout=120)
    assert node0.returncode == 0, node0.stderr[-2000:]
    assert node1.returncode == 0, err1[-2000:]
    assert "node 1: done" in out1
    (run,) = [r for r in runs_json(env, tmp) if r["experiment"] == "nodes"]
    assert (run["status"], run["world_size"], run["nnodes"]) == ("succeeded", 2, 2)


def test_a_batch_the_world_size_does_not_divide_fails_in_one_line(
        lab: tuple[Path, dict[str, str], Store]) -> None:
    tmp, env, store = lab
    path = spec(tmp, "odd")
    path.write_text(path.read_text().replace("batch_size: 20", "batch_size: 21"))
    done = robustlab("run", str(path), "--nproc-per-node", "2", env=env, cwd=tmp)
    assert done.returncode != 0
    (run,) = store.list_runs(experiment="odd")
    assert run.status == "failed"
    assert "batch_size 21 is the global batch: it must be divisible by the world size 2" in \
        (run.error or "")


@pytest.mark.redis
def test_a_worker_runs_a_queued_run_over_two_processes(
        lab: tuple[Path, dict[str, str], Store]) -> None:
    tmp, env, store = lab
    # A queue of its own: no other worker on this Redis (another test run) can take the run.
    env = {**env, "ROBUSTLAB_DEFAULT_QUEUE": f"distributed-{uuid.uuid4().hex[:8]}"}
    flush_redis(env["ROBUSTLAB_BROKER_URL"])
    processes = Processes(tmp, env)
    try:
        processes.worker("--nproc-per-node", "2")
        submitted = robustlab("submit", str(spec(tmp, "queued")), env=env, cwd=tmp)
        assert submitted.returncode == 0, submitted.stderr
        run = wait_for(lambda: next((r for r in store.list_runs(experiment="queued")
                                     if r.status in ("succeeded", "failed")), None), 300,
                       "the queued run to end")
        assert run.status == "succeeded", run.error
        assert (run.provenance["world_size"], run.provenance["backend"]) == (2, "gloo")
    finally:
        processes.stop_all()
        flush_redis(env["ROBUSTLAB_BROKER_URL"])


def test_trades_bf16_and_an_eps_ramp_train_over_two_processes(
        lab: tuple[Path, dict[str, str], Store]) -> None:
    tmp, env, store = lab
    path = spec(tmp, "trades_pair", n=200)
    path.write_text(path.read_text().replace(
        "adversary: {norm: linf, eps: 0.1, steps: 2, step_size: 0.05}",
        "adversary: {method: trades, beta: 3, norm: linf, eps: 0.1, steps: 2, ramp_epochs: 1}")
        .replace("batch_size: 20\n", "batch_size: 20\n  amp: bf16\n"))
    done = robustlab("run", str(path), "--nproc-per-node", "2", env=env, cwd=tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = store.list_runs(experiment="trades_pair")
    assert run.status == "succeeded" and run.provenance["world_size"] == 2
    eps = sorted((m.step, m.value) for m in store.metrics(run_id=run.id) if m.name == "eps")
    assert [value for _, value in eps] == [0.0, 0.1]


def test_cancel_stops_every_rank(lab: tuple[Path, dict[str, str], Store]) -> None:
    tmp, env, store = lab
    process = subprocess.Popen(
        [ROBUSTLAB, "run", str(spec(tmp, "cancelled", epochs=6, n=1000)), "--nproc-per-node",
         "2"], env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = wait_for(lambda: next(iter(store.list_runs(experiment="cancelled")), None), 120,
                       "the run to be recorded")
        wait_for(lambda: rank_pids(1) and store.get_run(run.id).progress > 0, 180,
                 "the ranks to train")
        assert robustlab("cancel", run.id, env=env, cwd=tmp).returncode == 0
        process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert store.get_run(run.id).status == "cancelled"
    wait_for(lambda: not rank_pids(0) and not rank_pids(1), 30, "every rank to end")
