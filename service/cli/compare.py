"""``compare RUN RUN...``: runs side by side (spec diff, results, metrics), as MLflow's compare.

The numbers come from ``service.analysis.compare`` (the dashboard's Compare page uses the same
functions); this module fetches the runs from the store and prints. Torch-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from service.analysis.compare import MISSING, Comparison, RunSide, compare
from service.cli.common import UserError, friendly_errors, open_store, out
from service.results import fetch_rows
from service.store.repository import Store


def run_sides(store: Store, run_ids: Sequence[str]) -> list[RunSide]:
    """What ``compare`` needs of each run (ids or unique prefixes), read from the store."""
    sides = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        metrics = [{"name": m.name, "step": m.step, "value": m.value, "tags": m.tags}
                   for m in store.metrics(run_id=run.id)]
        sides.append(RunSide(run_id=run.id, resolved_spec=run.resolved_spec,
                             results=fetch_rows(store, run_ids=[run.id]), metrics=metrics,
                             experiment=run.experiment, status=run.status))
    return sides


def comparison_dict(comparison: Comparison, sides: Sequence[RunSide]) -> dict[str, Any]:
    """The JSON of ``compare --format json`` (keys: runs, spec_diff, result_columns, results,
    metrics, curves); per-run values are lists in the order of ``runs``."""
    return {
        "runs": [{"id": s.run_id, "experiment": s.experiment, "status": s.status}
                 for s in sides],
        "spec_diff": [{"path": d.path, "values": [None if v == MISSING else v for v in d.values]}
                      for d in comparison.spec_diff],
        "result_columns": list(comparison.result_columns),
        "results": [{**row.identity, "accuracy": list(row.values)} for row in comparison.results],
        "metrics": [{**row.identity, "values": list(row.values)} for row in comparison.metrics],
        "curves": [asdict(curve) for curve in comparison.curves],
    }


def _value(value: Any) -> str:
    """A cell's text, escaped: rich would read ``[0.1, 0.3]`` or ``name[k=v]`` as markup."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return escape(json.dumps(value))
    return escape(str(value))


def _accuracy(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def to_tables(comparison: Comparison) -> list[Table]:
    """Three tables: spec paths that differ, accuracies, and each metric series' last value."""
    ids = comparison.run_ids
    spec = Table(title="spec diff", header_style="bold", title_justify="left")
    spec.add_column("path")
    for run_id in ids:
        spec.add_column(run_id)
    for difference in comparison.spec_diff:
        spec.add_row(escape(difference.path), *(_value(v) for v in difference.values))
    if not comparison.spec_diff:
        spec.add_row("(the resolved specs are identical)", *("" for _ in ids))

    results = Table(title="results (accuracy)", header_style="bold", title_justify="left")
    for column in comparison.result_columns:
        results.add_column(column)
    for run_id in ids:
        results.add_column(run_id, justify="right")
    results.add_column("spread", justify="right")
    for row in comparison.results:
        spread = row.spread
        results.add_row(*(_value(row.identity[c]) if row.identity[c] is not None else "-"
                          for c in comparison.result_columns),
                        *(_accuracy(v) for v in row.values),
                        f"{100 * spread:.2f}" if spread is not None else "")

    metrics = Table(title="metrics (last step of each series)", header_style="bold",
                    title_justify="left")
    metrics.add_column("metric")
    for run_id in ids:
        metrics.add_column(run_id, justify="right")
    for row in comparison.metrics:
        metrics.add_row(_value(row.identity["metric"]),
                        *("-" if v is None else f"{v:.4g}" for v in row.values))
    return [spec, results, metrics]


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@friendly_errors
def compare_command(runs: Sequence[str], fmt: str) -> None:
    """Show RUNS side by side (ids or unique prefixes): spec diff, results, metrics.

    \b
    spec diff: every resolved-spec path whose value differs (∅: the run's spec lacks it);
    results: each evaluation's accuracy per run, lined up on model, split, threat model, eps
    and attack (training eps too, when a run holds several); metrics: each series' value at
    its last step. --format json adds every curve (a metric over steps) of every run.
    """
    if len(runs) < 2:
        raise UserError("compare needs at least two runs")
    sides = run_sides(open_store(), runs)
    if len({side.run_id for side in sides}) < len(sides):
        raise UserError("the same run is given twice")
    comparison = compare(sides)
    if fmt == "json":
        click.echo(json.dumps(comparison_dict(comparison, sides), indent=2, default=str))
        return
    for table in to_tables(comparison):
        out.print(table)


COMMANDS: list[click.Command] = [compare_command]
