"""Queue commands: ``submit``, ``worker``, ``cancel``.

``service.queue`` imports Celery (about a second), so it is imported inside the commands that
talk to the broker: ``robustlab --help`` and the read-only commands stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from contract.specs.loading import load_spec_file
from contract.status import RunStatus
from service.cli.common import (
    LOG_LEVELS,
    UserError,
    err,
    friendly_errors,
    open_store,
    out,
    overrides_option,
    params_text,
)
from service.launch import Launch, nproc_default, parse_gpus
from service.settings import get_settings


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@click.option("--queue", "queue_name", default=None, metavar="NAME",
              help="Queue to put the runs on (default: ROBUSTLAB_DEFAULT_QUEUE, 'gpu').")
@click.option("--force", is_flag=True,
              help="Queue cells again even if identical ones succeeded or were interrupted.")
@friendly_errors
def submit(spec: str, overrides: Sequence[str], queue_name: str | None, force: bool) -> None:
    """Queue a spec for workers: one run per sweep cell; print the run ids.

    \b
    Cells identical to a succeeded run are reported as done, not run again (--force re-runs
    them); cells identical to a queued or running run are reported, not queued twice.
    Needs the broker (ROBUSTLAB_BROKER_URL) and `robustlab worker` processes to execute.
    """
    loaded = load_spec_file(spec, overrides)  # validate before touching anything
    from service.queue.app import BrokerUnavailable  # Celery
    from service.queue.submission import submit as submit_spec

    store = open_store()
    try:
        submission = submit_spec(loaded, store, queue=queue_name, force=force)
    except BrokerUnavailable as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    for run in submission.queued:
        out.print(f"{run.id} queued {params_text(run)}".rstrip(), markup=False)
    for run in submission.pending:
        out.print(f"{run.id} {run.status} {params_text(run)}".rstrip(), markup=False)
    for run in submission.done:
        out.print(f"{run.id} done {params_text(run)}".rstrip(), markup=False)
    err.print(_summary(submission), markup=False)


def _summary(submission: Any) -> str:
    parts = [f"{submission.experiment}: {len(submission.queued)} run(s) queued on "
             f"{submission.queue!r}"]
    if submission.pending:
        parts.append(f"{len(submission.pending)} identical run(s) already queued, running or "
                     "interrupted (not queued twice; `robustlab resume RUN` continues an "
                     "interrupted one, --force queues a new one)")
    if submission.done:
        parts.append(f"{len(submission.done)} identical run(s) already succeeded "
                     "(not run again; --force runs them again)")
    return "; ".join(parts)


def _check_device(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from service.queue.app import DEVICE_PATTERN  # Celery, only when --device is given

    if value is not None and not DEVICE_PATTERN.fullmatch(value):
        raise click.BadParameter("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return value


@click.command()
@click.option("--queues", default=None, metavar="Q1,Q2",
              help="Comma-separated queues to take runs from (default: ROBUSTLAB_DEFAULT_QUEUE).")
@click.option("--device", default=None, callback=_check_device, metavar="DEVICE",
              help="Run everything on this device: cpu, cuda, cuda:N (default: each spec's).")
@click.option("--loglevel", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False))
@click.option("--gpus", default=None, metavar="0,1,2,3",
              help="Run every run across these GPUs, one process each (torchrun), one run at "
                   "a time.")
@click.option("--nproc-per-node", type=int, default=None,
              help="Processes per run (default: the number of --gpus, else "
                   "ROBUSTLAB_NPROC_PER_NODE or 1); on the CPU, gloo ranks.")
@click.option("--backend", type=click.Choice(["gloo", "nccl"]), default=None,
              help="Process-group backend of multi-process runs (default: nccl on CUDA).")
@friendly_errors
def worker(queues: str | None, device: str | None, loglevel: str, gpus: str | None,
           nproc_per_node: int | None, backend: str | None) -> None:
    """Execute queued runs one at a time; by default on one device (start one worker per GPU).

    With --gpus 0,1,2,3 (or --nproc-per-node N) each run is one job over all of them, as
    `robustlab run --nproc-per-node N` runs it: route big runs to a queue served by such a
    worker. A run whose worker dies is delivered again and resumes from its last checkpoint.
    """
    try:
        chosen = parse_gpus(gpus)
        launch = Launch(nproc_per_node=nproc_per_node or len(chosen) or nproc_default(),
                        backend=backend, gpus=chosen).check()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    from service.queue.app import BrokerUnavailable, check_broker_url  # Celery
    from service.queue.worker import start_worker

    try:
        check_broker_url(get_settings().broker_url)
    except BrokerUnavailable as exc:
        raise UserError(str(exc)) from None
    open_store().close()  # refuse to start against a database that is not migrated
    names = [name.strip() for name in (queues or get_settings().default_queue).split(",")]
    raise SystemExit(start_worker([name for name in names if name], device,
                                  loglevel=loglevel.upper(), launch=launch))


@click.command()
@click.argument("runs", nargs=-1, required=True)
@friendly_errors
def cancel(runs: Sequence[str]) -> None:
    """Cancel runs: a queued run at once, a running one at its next batch boundary."""
    store = open_store()
    try:
        for run_id in runs:
            run = store.request_cancel(store.get_run(run_id).id)
            if run.status == RunStatus.RUNNING:
                out.print(f"{run.id} cancel requested: it stops at its next batch boundary")
            elif run.status == RunStatus.CANCELLED and run.cancel_requested:
                out.print(f"{run.id} cancelled")
            else:
                out.print(f"{run.id} already {run.status}: nothing to cancel")
    finally:
        store.close()


COMMANDS: list[click.Command] = [submit, worker, cancel]
