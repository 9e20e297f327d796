"""What the queue and the store cost a run: latency, overhead on a one-minute run, a 1,000-run sweep.

Against the real services (Redis, PostgreSQL) and a real ``robustlab worker --device cpu``:

1. submit-to-start latency: ``service.queue.submission.submit`` called on an idle worker -> the run marked
   running in the database (aim: under 1 s);
2. per-run overhead of queue plus store on a run of about a minute: the same ``theory`` spec
   executed in this process with a ``MemoryReporter`` (no queue, no database), then submitted
   and executed by the worker; the overhead is the difference over the bare run (aim: under 1 %);
3. a sweep of 1,000 trivial ``theory`` cells, submitted at once and drained by one worker:
   time to submit, time to drain, runs per second, and the overhead per run beyond the runs'
   own recorded durations.

Each phase alternates or repeats its measurements and reports medians. The machine's other load
affects every number; run it on an otherwise idle machine for figures worth quoting.

    .venv/bin/python benchmarks/queue_overhead.py [--cells 1000] [--minute-s 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import torch
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contract.records import MemoryReporter, MetricRecord  # noqa: E402
from contract.specs.loading import LoadedSpec, load_spec_text  # noqa: E402
from service.queue.submission import submit  # noqa: E402
from service.recording import record  # noqa: E402
from service.runner import execute_run  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store import migrate  # noqa: E402
from service.store.entities import RunInfo  # noqa: E402
from service.store.repository import Store  # noqa: E402
from service.store.storage import LocalStorage  # noqa: E402
from workers.science.context import RunContext  # noqa: E402
from workers.science.experiments import get_experiment  # noqa: E402

POSTGRES_SERVER = os.environ.get("ROBUSTLAB_BENCH_POSTGRES",
                                 "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BROKER = os.environ.get("ROBUSTLAB_BENCH_REDIS", "redis://127.0.0.1:6379/13")
QUEUE = "bench"
ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
ENDED = ("succeeded", "failed", "cancelled")


def theory_yaml(name: str, *, seed: int = 0, n: int = 200, d: int = 50, epochs: int = 1,
                models: str = "[averaging]", cells: int = 0) -> str:
    sweep = f"sweep:\n  seed: {list(range(cells))}\n" if cells else ""
    return (f"name: {name}\nkind: theory\ndevice: cpu\nseed: {seed}\nn_train: {n}\n"
            f"n_test: {n}\nepochs: {epochs}\ndistribution: {{p: 0.7, d: {d}, eta: 0.5}}\n"
            f"eps: [1.0]\nmodels: {models}\n{sweep}")


@dataclass
class Bench:
    store: Store
    settings: Settings
    scratch: Path

    def submit(self, text: str) -> tuple[float, list[RunInfo]]:
        """Submit; return the wall-clock time just before the call, and the queued runs."""
        loaded = load_spec_text(text)
        t0 = time.time()
        submission = submit(loaded, self.store, queue=QUEUE, settings=self.settings)
        return t0, submission.queued

    def wait_ended(self, run_ids: list[str], poll_s: float = 0.05) -> list[RunInfo]:
        while True:
            runs = [self.store.get_run(run_id) for run_id in run_ids]
            if all(run.status in ENDED for run in runs):
                failed = [run for run in runs if run.status != "succeeded"]
                if failed:
                    raise RuntimeError(f"run {failed[0].id} {failed[0].status}: {failed[0].error}")
                return runs
            time.sleep(poll_s)

    def wait_started(self, run_id: str, poll_s: float = 0.01) -> RunInfo:
        while (run := self.store.get_run(run_id)).started_at is None:
            time.sleep(poll_s)
        return run

    def in_process_seconds(self, loaded: LoadedSpec) -> float:
        """Recorded and executed in this process (runner and store, no queue, no new process)."""
        (run,) = record(loaded, self.store, force=True).runs
        start = time.perf_counter()
        ended = execute_run(run.id, self.store, device="cpu", settings=self.settings)
        elapsed = time.perf_counter() - start
        if ended.status != "succeeded":
            raise RuntimeError(f"in-process run {ended.id} {ended.status}: {ended.error}")
        return elapsed

    def bare_seconds(self, loaded: LoadedSpec) -> float:
        """The experiment alone, in this process: no queue, no database."""
        directory = Path(tempfile.mkdtemp(dir=self.scratch))
        ctx = RunContext(run_id="bare", run_dir=directory, device=torch.device("cpu"),
                         reporter=MemoryReporter(), data_dir=directory)
        start = time.perf_counter()
        get_experiment(loaded.spec.kind)(loaded.spec, ctx)
        return time.perf_counter() - start


# --------------------------------------------------------------------------- phases


def latency(bench: Bench, repeats: int) -> dict[str, float]:
    submits, starts = [], []
    for i in range(repeats):
        t0, (run,) = bench.submit(theory_yaml("bench_latency", seed=1000 + i))
        submits.append(time.time() - t0)
        started = bench.wait_started(run.id)
        assert started.started_at is not None
        starts.append(started.started_at.timestamp() - t0)
        bench.wait_ended([run.id])
        time.sleep(1.0)  # let the worker replace its child: the next submit finds it idle
    return {"submit call (median)": statistics.median(submits),
            "submit -> running (median)": statistics.median(starts),
            "submit -> running (max)": max(starts)}


def calibrate_epochs(bench: Bench, target_s: float, rounds: int = 3) -> int:
    """Epochs of the E1 theory spec (paper-sized sample) that take about ``target_s``.

    The run has fixed costs besides its epochs (sampling, closed forms, transfer, the figure),
    so the epochs are scaled a few times towards the target rather than once.
    """
    epochs = 20
    for _ in range(rounds):
        seconds = bench.bare_seconds(load_spec_text(minute_yaml(epochs, seed=0)))
        if abs(seconds - target_s) < 0.1 * target_s:
            break
        epochs = max(1, round(epochs * target_s / seconds))
    return epochs


def minute_yaml(epochs: int, seed: int) -> str:
    return theory_yaml("bench_minute", seed=seed, n=10_000, d=1000, epochs=epochs,
                       models="[svm, logistic]")


def minute_run(bench: Bench, epochs: int, repeats: int) -> dict[str, float]:
    """Bare (in this process, no queue, no database), in-process through the runner and the
    store (``robustlab run``'s path), and submitted executions, alternated.

    The overhead splits exactly into the submit-to-start latency and the extra time inside the
    run (its store operations, and the first-use costs of the fresh process each run gets);
    the store's share is estimated from the operations the run made (a progress write and a
    cancel check at most once a second each, one upsert per record) times their measured cost,
    and measured as the in-process execution's excess over the bare run.
    """
    bare, local, queued, latencies, inside, records = [], [], [], [], [], []
    for i in range(repeats):
        text = minute_yaml(epochs, seed=i)
        bare.append(bench.bare_seconds(load_spec_text(text)))
        local.append(bench.in_process_seconds(load_spec_text(minute_yaml(epochs, seed=100 + i))))
        t0, (run,) = bench.submit(text)
        (ended,) = bench.wait_ended([run.id], poll_s=0.5)
        assert ended.started_at and ended.finished_at and ended.duration_s is not None
        queued.append(ended.finished_at.timestamp() - t0)
        latencies.append(ended.started_at.timestamp() - t0)
        inside.append(ended.duration_s)
        records.append(len(bench.store.results(run_ids=[run.id]))
                       + len(bench.store.metrics(run_id=run.id))
                       + len(bench.store.artifacts(run_id=run.id)))
    b, q, r = statistics.median(bare), statistics.median(queued), statistics.median(inside)
    progress_ms, upsert_ms = store_costs(bench, run.id)
    store_s = (2 * r * progress_ms + statistics.median(records) * upsert_ms) / 1000
    return {"epochs": epochs, "bare run (median s)": b,
            "submitted run, submit -> finished (median s)": q,
            "overhead (s)": q - b, "overhead (% of bare)": 100 * (q - b) / b,
            "of which submit -> running (median s)": statistics.median(latencies),
            "of which inside the run: recorded duration - bare (s)": r - b,
            "same spec, runner + store in this process, no queue (median s)":
                statistics.median(local),
            "runner + store overhead without the queue (% of bare)":
                100 * (statistics.median(local) - b) / b,
            "store operation (median ms)": progress_ms,
            "record upsert (median ms)": upsert_ms,
            "records written per run": statistics.median(records),
            "store time per run, estimated (s)": store_s}


def store_costs(bench: Bench, run_id: str, repeats: int = 200) -> tuple[float, float]:
    """Median milliseconds of the store calls a running run makes: a progress write or a
    cancel check (each at most once a second), and one record upsert."""
    progress, upserts = [], []
    for step in range(repeats):
        start = time.perf_counter()
        if step % 2:
            bench.store.cancel_requested(run_id)
        else:
            bench.store.set_progress(run_id, 1.0)  # the run has ended: this changes nothing
        progress.append(time.perf_counter() - start)
        start = time.perf_counter()
        bench.store.upsert_metric(run_id, MetricRecord(name="bench_probe", value=1.0, step=step))
        upserts.append(time.perf_counter() - start)
    return 1000 * statistics.median(progress), 1000 * statistics.median(upserts)


def sweep(bench: Bench, cells: int) -> dict[str, float]:
    t0, runs = bench.submit(theory_yaml("bench_sweep", cells=cells))
    submitted = time.time() - t0
    ended = bench.wait_ended([run.id for run in runs], poll_s=1.0)
    starts = [run.started_at.timestamp() for run in ended if run.started_at]
    finishes = [run.finished_at.timestamp() for run in ended if run.finished_at]
    drain = max(finishes) - min(starts)
    mean_run = statistics.fmean(run.duration_s or 0.0 for run in ended)
    bare = statistics.median(bench.bare_seconds(load_spec_text(theory_yaml("bench_bare", seed=s)))
                             for s in range(5))
    return {"cells": cells, "submit (s)": submitted, "submit per cell (ms)": 1000 * submitted / cells,
            "drain: first start -> last finish (s)": drain, "runs per second": cells / drain,
            "bare run in-process (median ms)": 1000 * bare,
            "recorded run duration (mean ms)": 1000 * mean_run,
            "wall per run (ms)": 1000 * drain / cells,
            "queue overhead per run beyond its duration (ms)": 1000 * (drain / cells - mean_run)}


# --------------------------------------------------------------------------- services


@contextmanager
def database() -> Iterator[str]:
    name = f"robustlab_bench_{uuid.uuid4().hex[:8]}"
    _autocommit(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_SERVER).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        _autocommit(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _autocommit(sql: str) -> None:
    engine = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(sql)
    finally:
        engine.dispose()


@contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen([ROBUSTLAB, "worker", "--device", "cpu", "--queues", QUEUE],
                                   env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait(lambda: " ready." in log.read_text(errors="replace"), 300, "the worker")
        yield process
    finally:
        os.killpg(process.pid, 9)
        process.wait()


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def table(title: str, rows: dict[str, Any]) -> str:
    lines = [f"\n{title}\n", "| measure | value |", "|---|---|"]
    for key, value in rows.items():
        lines.append(f"| {key} | {value:.3f} |" if isinstance(value, float) else
                     f"| {key} | {value} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1000, help="Cells of the trivial sweep.")
    parser.add_argument("--minute-s", type=float, default=60.0, help="Length of the long run.")
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument("--minute-runs", type=int, default=2)
    parser.add_argument("--phases", default="latency,minute,sweep",
                        help="Comma-separated phases to run (latency, minute, sweep).")
    parser.add_argument("--max-tasks-per-child", type=int, default=None,
                        help="ROBUSTLAB_WORKER_MAX_TASKS_PER_CHILD for the worker (default: setting).")
    args = parser.parse_args()
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    scratch = Path(tempfile.mkdtemp(prefix="robustlab-bench-"))
    try:
        with database() as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
            env.update({"ROBUSTLAB_DATABASE_URL": url, "ROBUSTLAB_BROKER_URL": BROKER,
                        "ROBUSTLAB_RUNS_DIR": str(scratch / "runs"),
                        "ROBUSTLAB_ARTIFACT_DIR": str(scratch / "artifacts")})
            if args.max_tasks_per_child:
                env["ROBUSTLAB_WORKER_MAX_TASKS_PER_CHILD"] = str(args.max_tasks_per_child)
            settings = Settings(database_url=url, broker_url=BROKER, default_queue=QUEUE,
                                runs_dir=scratch / "runs", artifact_dir=scratch / "artifacts")
            store = Store(url, storage=LocalStorage(settings.artifact_dir))
            bench = Bench(store, settings, scratch)
            with worker(env, scratch / "worker.log"):
                print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
                      f"load average {os.getloadavg()[0]:.1f}, max tasks per child "
                      f"{env.get('ROBUSTLAB_WORKER_MAX_TASKS_PER_CHILD', 'default')}", flush=True)
                phases = args.phases.split(",")
                if "latency" in phases:
                    print(table("Submit-to-start latency (idle worker)",
                                latency(bench, args.latency_runs)), flush=True)
                if "minute" in phases:
                    epochs = calibrate_epochs(bench, args.minute_s)
                    print(table("Queue + store overhead on a run of about a minute",
                                minute_run(bench, epochs, args.minute_runs)), flush=True)
                if "sweep" in phases:
                    print(table(f"A {args.cells}-cell sweep of trivial runs, one CPU worker",
                                sweep(bench, args.cells)), flush=True)
            store.close()
    finally:
        client.flushdb()
        client.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
