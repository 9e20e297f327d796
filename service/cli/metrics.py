"""``metrics RUN...``: every metric of some runs, curves included (every step of every series).

Torch-free: it reads the store and prints. Rows are ``run_id, name, tags, step, value``; a
series is one (name, tags), e.g. ``train_loss`` per epoch or ``weight_l1[topk=50]``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from service.analysis.compare import curves, metric_label
from service.cli.common import err, friendly_errors, open_store, out
from service.store.entities import MetricInfo

METRIC_COLUMNS = ("run_id", "name", "tags", "step", "value")
"""The keys of every JSON/CSV row of ``robustlab metrics`` (a contract: scripts parse these)."""


def metric_rows(metrics: Sequence[MetricInfo]) -> list[dict[str, Any]]:
    """Plain rows, in curve order (run, name, tags, step)."""
    rows = [{"run_id": m.run_id, "name": m.name, "tags": dict(m.tags), "step": m.step,
             "value": m.value} for m in metrics]
    return sorted(rows, key=lambda r: (r["run_id"], metric_label(r["name"], r["tags"]),
                                       r["step"]))


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with the tags as one JSON object per row (sorted keys)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "tags": json.dumps(row["tags"], sort_keys=True)})
    return buffer.getvalue()


def to_tables(rows: Sequence[dict[str, Any]]) -> list[Table]:
    """One table per run: a row per series; a curve lists every step's value in order."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    tables = []
    for run_id, run_rows in by_run.items():
        table = Table(title=f"metrics of {run_id}", header_style="bold", title_justify="left")
        for column, justify in (("metric", "left"), ("steps", "right"), ("last", "right"),
                                ("min", "right"), ("max", "right"), ("values by step", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for curve in curves(run_id, run_rows):
            if len(curve.steps) == 1:
                steps = str(curve.steps[0])
                by_step = ""
            else:
                steps = f"{curve.steps[0]}..{curve.steps[-1]} ({len(curve.steps)})"
                by_step = " ".join(f"{s}:{_number(v)}" for s, v in zip(curve.steps, curve.values,
                                                                      strict=True))
            table.add_row(escape(curve.label), steps, _number(curve.values[-1]),
                          _number(min(curve.values)), _number(max(curve.values)), by_step)
        tables.append(table)
    return tables


def _number(value: float) -> str:
    return f"{value:.4g}"


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Only metrics with this name (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@friendly_errors
def metrics(runs: Sequence[str], names: Sequence[str], fmt: str) -> None:
    """Print every metric of RUNS (unique id prefixes are enough), training curves included.

    \b
    The table has one row per series (a metric name and its tags), with every step's value
    for a curve; CSV and JSON have one row per value with keys run_id, name, tags, step, value.
    """
    store = open_store()
    found: list[MetricInfo] = []
    for run_id in runs:
        full_id = store.get_run(run_id).id
        found += store.metrics(run_id=full_id)
    if names:
        found = [m for m in found if m.name in set(names)]
    rows = metric_rows(found)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(to_csv(rows), nl=False)
    elif rows:
        for table in to_tables(rows):
            out.print(table)
    else:
        err.print("no metrics for " + " ".join(runs))


COMMANDS: list[click.Command] = [metrics]
