"""Result queries: ``results`` (evaluation rows as a table, CSV, JSON or LaTeX).

Torch-free (a test checks ``sys.modules``): these read the database and print. Beyond
``--limit`` rows the table is a summary (rich draws about 200 rows a second); ``--all`` prints
every row as plain aligned text, which takes well under a second for 10,000 rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from service import seed_results
from service.cli.common import err, friendly_errors, open_store, out
from service.results import (
    TABLE_LIMIT,
    fetch_rows,
    summarise,
    summary_table,
    to_csv,
    to_json,
    to_latex,
    to_table,
    to_text,
)


@click.command()
@click.option("--experiment", default=None, help="Only this experiment's rows.")
@click.option("--run", "run_ids", multiple=True, help="Only these runs (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "latex"]),
              default="table", show_default=True)
@click.option("--all", "show_all", is_flag=True,
              help="Table: print every row (plain text), however many there are.")
@click.option("--limit", default=TABLE_LIMIT, show_default=True, type=click.IntRange(min=1),
              help="Table: beyond this many rows, print a summary instead (see --all).")
@click.option("--ci", "with_ci", is_flag=True,
              help="LaTeX: add a '95% CI (%)' column, the Wilson interval of each accuracy.")
@click.option("--over-seeds", "pooled", is_flag=True,
              help="One row per cell (the same spec apart from its seed) and result: mean, "
              "std, seeds and the 95% t interval of the mean over the seeds (table, csv, json).")
@friendly_errors
def results(experiment: str | None, run_ids: Sequence[str], fmt: str, show_all: bool,
            limit: int, with_ci: bool, pooled: bool) -> None:
    """Print evaluation rows: one per model x split x threat model x eps x attack.

    JSON rows are flat objects with keys run_id, experiment, kind, model, dataset, split,
    train_norm, train_eps, eval_norm, eval_eps, attack, steps, accuracy (a fraction) and n,
    among others, and last ci_low and ci_high: the 95% Wilson score interval of accuracy over
    n (computed, not stored; the table shows it as "95% CI" in percent, LaTeX with --ci).
    A table of more than --limit rows is summarised per experiment, dataset, split, model,
    threat model and attack; --all prints every row; csv/json always do.

    \b
    --over-seeds: one row per cell, a cell being the runs whose resolved specs are equal apart
    from seed (an evaluate run joins the cell of the run that trained its checkpoint), and per
    result key (model, dataset, split, training, threat model, eps, attack and its settings,
    variant, checkpoint). Keys: those columns, cell, n, mean, std (sample, ddof 1), seeds,
    ci_low and ci_high (mean ± t(0.975, seeds-1)·std/sqrt(seeds); null with one seed),
    seed_values and run_ids. The interval covers seed and sampling variation, not the
    weakness of an attack.
    """
    store = open_store()
    ids = [store.get_run(r).id for r in run_ids] or None
    rows = fetch_rows(store, experiment=experiment, run_ids=ids)
    if pooled:
        _print_over_seeds(seed_results.fetch_over_seeds(store, rows), fmt, experiment)
        return
    if fmt == "json":
        click.echo(to_json(rows))
    elif fmt == "csv":
        click.echo(to_csv(rows), nl=False)
    elif fmt == "latex":
        click.echo(to_latex(rows, caption=experiment, ci=with_ci), nl=False)
    elif len(rows) > limit and show_all:
        click.echo(to_text(rows, title=experiment), nl=False)
    elif len(rows) > limit:
        summary = summarise(rows)
        out.print(summary_table(summary, shown=limit, total=len(rows)))
        err.print(f"{len(rows):,} rows: a summary is shown; --all prints every row, "
                  "--format csv|json for scripts", markup=False)
    elif rows:
        out.print(to_table(rows, title=experiment))
    else:
        err.print("no results" + (f" for experiment {experiment!r}" if experiment else ""))


def _print_over_seeds(rows: list[dict[str, object]], fmt: str, experiment: str | None) -> None:
    if fmt == "json":
        click.echo(seed_results.to_json(rows))
    elif fmt == "csv":
        click.echo(seed_results.to_csv(rows), nl=False)
    elif fmt == "latex":
        raise click.UsageError("--over-seeds prints table, csv or json")
    elif rows:
        out.print(seed_results.to_table(rows, title=experiment))
    else:
        err.print("no results" + (f" for experiment {experiment!r}" if experiment else ""))


COMMANDS: list[click.Command] = [results]
