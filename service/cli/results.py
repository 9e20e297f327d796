"""Result queries: ``results`` (evaluation rows as a table, CSV, JSON or LaTeX).

Torch-free (a test checks ``sys.modules``): these read the database and print.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from service.cli.common import err, friendly_errors, open_store, out
from service.results import fetch_rows, to_csv, to_json, to_latex, to_table


@click.command()
@click.option("--experiment", default=None, help="Only this experiment's rows.")
@click.option("--run", "run_ids", multiple=True, help="Only these runs (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "latex"]),
              default="table", show_default=True)
@friendly_errors
def results(experiment: str | None, run_ids: Sequence[str], fmt: str) -> None:
    """Print evaluation rows: one per model x split x threat model x eps x attack.

    JSON rows are flat objects with keys run_id, experiment, kind, model, dataset, train_norm,
    train_eps, eval_norm, eval_eps, attack, steps, accuracy (a fraction) and n, among others.
    """
    store = open_store()
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


COMMANDS: list[click.Command] = [results]
