"""Standing evaluations: ``schedule add | list | remove`` and ``beat``.

``service.scheduler`` and ``service.queue`` import Celery (about a second), so they are imported
inside the commands that submit; listing and removing schedules read the store only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
from rich.table import Table

from service.cli.common import (
    LOG_LEVELS,
    UserError,
    friendly_errors,
    open_store,
    out,
    overrides_option,
)
from service.settings import get_settings
from service.store.scheduling import ScheduleInfo, Schedules


@click.group()
def schedule() -> None:
    """Standing evaluations: re-run an evaluate spec on every new checkpoint (see `beat`)."""


@schedule.command("add")
@click.argument("eval_spec", type=click.Path(dir_okay=False))
@click.option("--watch", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Evaluate every checkpoint file (*.pt) that appears in DIR.")
@click.option("--checkpoints-of", "checkpoints_of", default=None, metavar="EXPERIMENT",
              help="Evaluate the final checkpoint of every succeeded run of EXPERIMENT.")
@overrides_option
@click.option("--queue", "queue_name", default=None, metavar="NAME",
              help="Queue for the evaluations (default: ROBUSTLAB_DEFAULT_QUEUE).")
@friendly_errors
def schedule_add(eval_spec: str, watch: str | None, checkpoints_of: str | None,
                 overrides: Sequence[str], queue_name: str | None) -> None:
    """Register EVAL_SPEC (kind evaluate; its source is filled in per checkpoint)."""
    from service import scheduler  # Celery (it submits through service.queue)

    if (watch is None) == (checkpoints_of is None):
        raise click.UsageError("give exactly one of --watch DIR or --checkpoints-of EXPERIMENT")
    store = open_store()
    try:
        info, created = scheduler.add(store, eval_spec, overrides, watch=watch,
                                      checkpoints_of=checkpoints_of, queue=queue_name)
    finally:
        store.close()
    if created:
        out.print(f"schedule {info.id}: {info.name} evaluates {_target(info)} "
                  "(`robustlab beat` enqueues them)", markup=False)
    else:
        out.print(f"schedule {info.id} already does this: {info.name} evaluates "
                  f"{_target(info)}", markup=False)


def _target(info: ScheduleInfo) -> str:
    if info.target_kind == "watch":
        return f"every new *.pt in {info.target}"
    return f"the final checkpoint of every succeeded run of {info.target!r}"


@schedule.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@friendly_errors
def schedule_list(fmt: str) -> None:
    """List standing evaluations and how many checkpoints each has taken on."""
    store = open_store()
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
@friendly_errors
def schedule_remove(schedule_id: int) -> None:
    """Stop a standing evaluation; the runs it already submitted stay."""
    store = open_store()
    try:
        info = Schedules(store).remove(schedule_id)
    finally:
        store.close()
    out.print(f"schedule {info.id} removed ({info.covered} checkpoint(s) it took on keep "
              "their runs)")


@click.command()
@click.option("--interval", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between scans for new checkpoints.")
@click.option("--loglevel", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False))
@friendly_errors
def beat(interval: float, loglevel: str) -> None:
    """Scan for checkpoints that standing evaluations have not covered, and queue them.

    Run one beat per deployment (two are safe: each checkpoint is still enqueued once).
    """
    from service.queue.app import BrokerUnavailable, check_broker_url  # Celery
    from service.queue.worker import start_beat

    try:
        check_broker_url(get_settings().broker_url)
    except BrokerUnavailable as exc:
        raise UserError(str(exc)) from None
    open_store().close()  # refuse to start against a database that is not migrated
    raise SystemExit(start_beat(interval, loglevel=loglevel.upper()))


COMMANDS: list[click.Command] = [schedule, beat]
