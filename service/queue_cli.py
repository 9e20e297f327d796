"""The queue's commands: ``submit``, ``worker``, ``cancel``, ``schedule add|list|remove``, ``beat``.

``service.cli`` adds every command in ``COMMANDS`` to ``robustlab``. This module imports neither
Celery nor torch at import time (``robustlab --help`` stays fast), and takes ``service.cli``'s
helpers inside the commands, because ``service.cli`` imports this module while it loads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _friendly(fn: F) -> F:
    """``service.cli``'s one-line errors (exit 2) for the project's expected exceptions."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from service.cli import _friendly_errors

        return _friendly_errors(fn)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _user_error(message: str) -> click.ClickException:
    from service.cli import UserError

    return UserError(message)


def _consoles() -> tuple[Any, Any]:
    from service.cli import err, out

    return out, err


def _store() -> Any:
    from service.store.repository import Store

    return Store.from_settings()


def _overrides(fn: F) -> F:
    return click.option(
        "--set", "overrides", multiple=True, metavar="PATH=VALUE",
        help="Override a spec field; VALUE is parsed as YAML (e.g. --set eps=[0,0.1]).",
    )(fn)


def _params(run: Any) -> str:
    return " ".join(f"{key}={value}" for key, value in run.params.items())


# --------------------------------------------------------------------------- submit


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_overrides
@click.option("--queue", "queue_name", default=None, metavar="NAME",
              help="Queue to put the runs on (default: ROBUSTLAB_DEFAULT_QUEUE, 'gpu').")
@click.option("--force", is_flag=True, help="Run cells again even if identical ones succeeded.")
@_friendly
def submit(spec: str, overrides: Sequence[str], queue_name: str | None, force: bool) -> None:
    """Queue a spec for workers: one run per sweep cell; print the run ids.

    \b
    Cells identical to a succeeded run are reported as done, not run again (--force re-runs
    them); cells identical to a queued or running run are reported, not queued twice.
    Needs the broker (ROBUSTLAB_BROKER_URL) and `robustlab worker` processes to execute.
    """
    from service.queue import BrokerUnavailable
    from service.queue import submit as submit_spec
    from service.specs.loading import load_spec_file

    loaded = load_spec_file(spec, overrides)  # validate before touching anything
    store = _store()
    try:
        submission = submit_spec(loaded, store, queue=queue_name, force=force)
    except BrokerUnavailable as exc:
        raise _user_error(str(exc)) from None
    finally:
        store.close()
    out, err = _consoles()
    for run in submission.queued:
        out.print(f"{run.id} queued {_params(run)}".rstrip(), markup=False)
    for run in submission.pending:
        out.print(f"{run.id} {run.status} {_params(run)}".rstrip(), markup=False)
    for run in submission.done:
        out.print(f"{run.id} done {_params(run)}".rstrip(), markup=False)
    err.print(_summary(submission), markup=False)


def _summary(submission: Any) -> str:
    parts = [f"{submission.experiment}: {len(submission.queued)} run(s) queued on "
             f"{submission.queue!r}"]
    if submission.pending:
        parts.append(f"{len(submission.pending)} identical run(s) already queued or running "
                     "(not queued twice)")
    if submission.done:
        parts.append(f"{len(submission.done)} identical run(s) already succeeded "
                     "(not run again; --force runs them again)")
    return "; ".join(parts)


# --------------------------------------------------------------------------- worker, cancel


def _check_device(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from service.queue import DEVICE_PATTERN

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
@_friendly
def worker(queues: str | None, device: str | None, loglevel: str) -> None:
    """Execute queued runs one at a time on one device; start one worker per GPU.

    A run whose worker dies is delivered again and resumes from its last checkpoint.
    """
    from service.queue import start_worker
    from service.settings import get_settings

    _store().close()  # refuse to start against a database that is not migrated
    names = [name.strip() for name in (queues or get_settings().default_queue).split(",")]
    raise SystemExit(start_worker([name for name in names if name], device,
                                  loglevel=loglevel.upper()))


@click.command()
@click.argument("runs", nargs=-1, required=True)
@_friendly
def cancel(runs: Sequence[str]) -> None:
    """Cancel runs: a queued run at once, a running one at its next batch boundary."""
    out, _ = _consoles()
    store = _store()
    try:
        for run_id in runs:
            run = store.request_cancel(store.get_run(run_id).id)
            if run.status == "running":
                out.print(f"{run.id} cancel requested: it stops at its next batch boundary")
            elif run.status == "cancelled" and run.cancel_requested:
                out.print(f"{run.id} cancelled")
            else:
                out.print(f"{run.id} already {run.status}: nothing to cancel")
    finally:
        store.close()


# --------------------------------------------------------------------------- schedules


@click.group()
def schedule() -> None:
    """Standing evaluations: re-run an evaluate spec on every new checkpoint (see `beat`)."""


@schedule.command("add")
@click.argument("eval_spec", type=click.Path(dir_okay=False))
@click.option("--watch", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Evaluate every checkpoint file (*.pt) that appears in DIR.")
@click.option("--checkpoints-of", "checkpoints_of", default=None, metavar="EXPERIMENT",
              help="Evaluate the final checkpoint of every succeeded run of EXPERIMENT.")
@_overrides
@click.option("--queue", "queue_name", default=None, metavar="NAME",
              help="Queue for the evaluations (default: ROBUSTLAB_DEFAULT_QUEUE).")
@_friendly
def schedule_add(eval_spec: str, watch: str | None, checkpoints_of: str | None,
                 overrides: Sequence[str], queue_name: str | None) -> None:
    """Register EVAL_SPEC (kind evaluate; its source is filled in per checkpoint)."""
    from service import scheduler

    if (watch is None) == (checkpoints_of is None):
        raise click.UsageError("give exactly one of --watch DIR or --checkpoints-of EXPERIMENT")
    store = _store()
    try:
        info, created = scheduler.add(store, eval_spec, overrides, watch=watch,
                                      checkpoints_of=checkpoints_of, queue=queue_name)
    finally:
        store.close()
    out, _ = _consoles()
    if created:
        out.print(f"schedule {info.id}: {info.name} evaluates {_target(info)} "
                  "(`robustlab beat` enqueues them)", markup=False)
    else:
        out.print(f"schedule {info.id} already does this: {info.name} evaluates "
                  f"{_target(info)}", markup=False)


def _target(info: Any) -> str:
    if info.target_kind == "watch":
        return f"every new *.pt in {info.target}"
    return f"the final checkpoint of every succeeded run of {info.target!r}"


@schedule.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@_friendly
def schedule_list(fmt: str) -> None:
    """List standing evaluations and how many checkpoints each has taken on."""
    from rich.table import Table

    from service.store.scheduling import Schedules

    store = _store()
    try:
        items = Schedules(store).all()
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps([
            {"id": i.id, "name": i.name, "target_kind": i.target_kind, "target": i.target,
             "queue": i.queue, "covered": i.covered, "source_path": i.source_path,
             "overrides": i.overrides, "created_at": i.created_at.isoformat()}
            for i in items], indent=2))
        return
    out, _ = _consoles()
    if not items:
        out.print("no schedules: try `robustlab schedule add EVAL_SPEC --watch DIR`")
        return
    table = Table(header_style="bold")
    for column in ("id", "name", "watches", "queue", "checkpoints taken", "created"):
        table.add_column(column)
    for item in items:
        watches = item.target if item.target_kind == "watch" else f"experiment {item.target}"
        table.add_row(str(item.id), item.name, watches, item.queue or "(default)",
                      str(item.covered), f"{item.created_at:%Y-%m-%d %H:%M}")
    out.print(table)


@schedule.command("remove")
@click.argument("schedule_id", type=int)
@_friendly
def schedule_remove(schedule_id: int) -> None:
    """Stop a standing evaluation; the runs it already submitted stay."""
    from service.store.scheduling import Schedules

    store = _store()
    try:
        info = Schedules(store).remove(schedule_id)
    finally:
        store.close()
    out, _ = _consoles()
    out.print(f"schedule {info.id} removed ({info.covered} checkpoint(s) it took on keep "
              "their runs)")


@click.command()
@click.option("--interval", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between scans for new checkpoints.")
@click.option("--loglevel", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False))
@_friendly
def beat(interval: float, loglevel: str) -> None:
    """Scan for checkpoints that standing evaluations have not covered, and queue them.

    Run one beat per deployment (two are safe: each checkpoint is still enqueued once).
    """
    from service.queue import start_beat

    _store().close()  # refuse to start against a database that is not migrated
    raise SystemExit(start_beat(interval, loglevel=loglevel.upper()))


COMMANDS: list[click.Command] = [submit, worker, cancel, schedule, beat]
