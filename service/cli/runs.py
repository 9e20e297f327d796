"""Run listings: ``runs`` (newest first) and ``runs show RUN``.

Torch-free by design (a test checks ``sys.modules``): listing runs must start in well under a
second, so nothing here imports the runner or the science.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from contract.status import RunStatus
from service import jsonout
from service.cli.common import UserError, err, first_line, friendly_errors, open_store, out
from service.deletion import DeletionRefused, delete_runs, parse_age, prunable
from service.recording import is_stale, shown_duration_s, shown_status
from service.results import fetch_rows, to_table
from service.settings import get_settings
from service.store.entities import CheckpointInfo, RunInfo
from service.store.repository import Store


def run_dict(item: RunInfo) -> dict[str, Any]:
    """A run as the JSON object of ``runs --format json`` (a contract: scripts parse it)."""
    return {
        "id": item.id, "experiment": item.experiment, "kind": item.kind, "cell": item.cell,
        "params": item.params, "status": item.status, "progress": item.progress,
        "stage": item.stage, "error": item.error, "spec_hash": item.spec_hash,
        "seed": item.seed, "git_sha": item.git_sha, "host": item.host, "device": item.device,
        "data_hash": item.data_hash, "package_versions": item.package_versions,
        "provenance": item.provenance, "attempts": item.attempts, "queue": item.queue,
        "created_at": item.created_at.isoformat() if item.created_at else None,
        "started_at": item.started_at.isoformat() if item.started_at else None,
        "finished_at": item.finished_at.isoformat() if item.finished_at else None,
        "duration_s": shown_duration_s(item), "stale": is_stale(item), "submitted_by": item.submitted_by,
        # How many processes ran it (an execution setting, recorded by rank 0); runs from
        # before distributed execution, and queued ones, ran (or will run) in one process.
        "world_size": item.provenance.get("world_size", 1),
        "nnodes": item.provenance.get("nnodes", 1),
        "backend": item.provenance.get("backend"),
    }


_COLOURS = {RunStatus.SUCCEEDED: "green", RunStatus.FAILED: "red", RunStatus.RUNNING: "yellow",
            RunStatus.CANCELLED: "dim"}


@click.group(invoke_without_command=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--experiment", default=None, help="Only runs of this experiment.")
@click.option("--status", default=None, type=click.Choice([s.value for s in RunStatus]))
@click.option("--limit", default=50, show_default=True, help="Newest N runs (0: all).")
@click.pass_context
@friendly_errors
def runs(ctx: click.Context, fmt: str, experiment: str | None, status: str | None,
         limit: int) -> None:
    """List runs, newest first. `robustlab runs show RUN` shows one."""
    if ctx.invoked_subcommand is not None:
        return
    items = open_store().list_runs(experiment=experiment, status=status, limit=limit or None)
    if fmt == "json":
        click.echo(jsonout.dumps([run_dict(i) for i in items]))
        return
    if not items:
        out.print("no runs yet: try `robustlab run specs/quickstart.yaml`")
        return
    table = Table(header_style="bold")
    for column in ("id", "experiment", "kind", "params", "status", "progress", "duration",
                   "submitted by", "error"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item.id, item.experiment, item.kind,
            " ".join(f"{k}={v}" for k, v in item.params.items()),
            f"[{'magenta' if is_stale(item) else _COLOURS.get(item.status, 'white')}]"  # type: ignore[call-overload]
            f"{shown_status(item)}[/]",
            f"{100 * item.progress:.0f}%",
            f"{shown_duration_s(item):.1f}s" if shown_duration_s(item) is not None else "",
            item.submitted_by or "",
            first_line(item.error)[:60],
        )
    out.print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@friendly_errors
def runs_show(run_id: str, fmt: str) -> None:
    """Show one run (a unique prefix of its id is enough): status, provenance, results."""
    store = open_store()
    item = store.get_run(run_id)
    rows = fetch_rows(store, run_ids=[item.id])
    artifacts = store.artifacts(run_id=item.id)
    checkpoints = store.list_checkpoints(run_id=item.id)
    if fmt == "json":
        data = run_dict(item) | {
            "resolved_spec": item.resolved_spec, "results": rows,
            "artifacts": [{"kind": a.kind, "name": a.name, "path": a.path, "sha256": a.sha256}
                          for a in artifacts],
            "checkpoints": [{"epoch": c.epoch, "path": c.path, "final": c.final}
                            for c in checkpoints],
            "selected": selected(item, checkpoints),
        }
        click.echo(jsonout.dumps(data))
        return
    info = run_dict(item) | {"status": shown_status(item)}
    for key in ("id", "experiment", "kind", "cell", "params", "status", "progress", "stage",
                "created_at", "started_at", "finished_at", "duration_s", "attempts", "seed",
                "spec_hash", "git_sha", "data_hash", "host", "device", "queue", "submitted_by",
                "world_size", "nnodes", "backend"):
        if info.get(key) not in (None, "", {}):
            out.print(f"[bold]{key:>12}[/bold]  {info[key]}")
    out.print(f"[bold]{'packages':>12}[/bold]  "
              + " ".join(f"{k}={v}" for k, v in item.package_versions.items()))
    if item.error:
        out.print(f"[bold red]{'error':>12}[/bold red]  {item.error.strip()}", markup=True)
    if rows:
        out.print(to_table(rows, title="results"))
    for artifact in artifacts:
        out.print(f"artifact  {artifact.kind:<14} {get_settings().artifact_dir / artifact.path}")
    for checkpoint in checkpoints:
        out.print(f"checkpoint epoch {checkpoint.epoch:<4} {checkpoint.path}"
                  + (" (final)" if checkpoint.final else ""))
    chosen = selected(item, checkpoints)
    if chosen is not None and chosen.get("metric"):
        out.print(f"[bold]{'selected':>12}[/bold]  {chosen['checkpoint']} checkpoint, epoch "
                  f"{chosen['epoch']} ({chosen['metric']} {chosen['value']})")


def selected(item: RunInfo, checkpoints: Sequence[CheckpointInfo]) -> dict[str, Any] | None:
    """The checkpoint ``training.select`` chose: ``{checkpoint, epoch, metric, value}`` (a
    contract). A run that selects ``final`` (every run older than selection too) names its
    final checkpoint with no metric; a run without checkpoints has none (null)."""
    if item.provenance.get("selected"):
        return dict(item.provenance["selected"])
    final = next((c for c in checkpoints if c.final), None)
    if final is None:
        return None
    return {"checkpoint": "final", "epoch": final.epoch, "metric": None, "value": None}


def _confirm(ids: Sequence[str], yes: bool) -> None:
    """Ask on a terminal; without one, ``--yes`` is required (nothing is deleted silently)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"deleting {len(ids)} run(s) needs --yes when there is no terminal "
                        "to confirm on")
    if not click.confirm(f"Delete {len(ids)} run(s) ({' '.join(ids[:10])}"
                         f"{' ...' if len(ids) > 10 else ''}) with their results, metrics, "
                         "artifacts and files?", default=False, err=True):
        raise UserError("nothing deleted")


def _delete(store: Store, ids: Sequence[str], force: bool) -> None:
    try:
        done = delete_runs(store, ids, force=force)
    except DeletionRefused as exc:
        raise UserError(str(exc)) from None
    for item in done:
        out.print(f"{item.run_id} deleted ({item.files_removed} file(s) removed)", markup=False)
        for path in item.kept:
            err.print(f"{item.run_id}: kept {path}: another run reads this checkpoint",
                      markup=False)


@runs.command("delete")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN [RUN...]")
@click.option("--yes", is_flag=True, help="Do not ask (needed without a terminal).")
@click.option("--force", is_flag=True, help="Cancel a queued or running run first.")
@friendly_errors
def runs_delete(run_ids: Sequence[str], yes: bool, force: bool) -> None:
    """Delete runs with their result rows, metrics, artifacts, checkpoints and run directory.

    A checkpoint file that another run reads (an evaluate run's source, say) is kept, and
    said so. A queued or running run is refused unless --force, which cancels it first.
    """
    store = open_store()
    ids = [store.get_run(run_id).id for run_id in run_ids]
    _confirm(ids, yes)
    _delete(store, ids, force)


@runs.command("prune")
@click.option("--status", "statuses", multiple=True, required=True,
              type=click.Choice([RunStatus.FAILED.value, RunStatus.CANCELLED.value]),
              help="Delete runs in this status (repeatable).")
@click.option("--older-than", default=None, metavar="AGE",
              help="Only runs created longer ago than this: 7d, 12h, 30m, 2w.")
@click.option("--yes", is_flag=True, help="Do not ask (needed without a terminal).")
@friendly_errors
def runs_prune(statuses: Sequence[str], older_than: str | None, yes: bool) -> None:
    """Delete every failed (or cancelled) run, as `runs delete` deletes one."""
    try:
        age = parse_age(older_than) if older_than else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    store = open_store()
    ids = prunable(store, statuses, age)
    if not ids:
        out.print("nothing to prune", markup=False)
        return
    _confirm(ids, yes)
    _delete(store, ids, False)


COMMANDS: list[click.Command] = [runs]
