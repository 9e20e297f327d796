"""``compare RUN RUN...``: runs side by side (spec diff, results, metrics), as MLflow's compare.

The numbers come from ``service.analysis.compare`` (the dashboard's Compare page uses the same
functions); this module fetches the runs from the store (with their per-example correctness
bits, for paired differences) and prints. Torch-free, and numpy- and scipy-free: the
statistics are ``service.analysis.stats``'s.
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

from service.analysis.compare import (
    MISSING,
    RESULT_IDENTITY,
    AgainstStrongest,
    Comparison,
    DifferenceTest,
    PairedDifference,
    RunSide,
    compare,
    evaluation_key,
)
from service.cli.common import UserError, friendly_errors, open_store, out
from service.results import fetch_rows
from service.store.repository import Store


def run_sides(store: Store, run_ids: Sequence[str]) -> list[RunSide]:
    """What ``compare`` needs of each run (ids or unique prefixes), read from the store: its
    spec, result rows, metrics and per-example bits (one query for every run's bits)."""
    runs = [store.get_run(run_id) for run_id in run_ids]
    bits: dict[str, dict[str, bytes]] = {run.id: {} for run in runs}
    for row in store.per_example([run.id for run in runs], ("run_id", *RESULT_IDENTITY)):
        bits[row["run_id"]][evaluation_key(row)] = row["per_example"]
    sides = []
    for run in runs:
        metrics = [{"name": m.name, "step": m.step, "value": m.value, "tags": m.tags}
                   for m in store.metrics(run_id=run.id)]
        sides.append(RunSide(run_id=run.id, resolved_spec=run.resolved_spec,
                             results=fetch_rows(store, run_ids=[run.id]), metrics=metrics,
                             experiment=run.experiment, status=run.status,
                             per_example=bits[run.id]))
    return sides


def _test_dict(test: DifferenceTest, p_holm: float) -> dict[str, Any]:
    return {"n": test.n, "a_only": test.a_only, "b_only": test.b_only,
            "difference": test.difference, "ci_low": test.ci_low, "ci_high": test.ci_high,
            "p_value": test.p_value, "p_holm": p_holm, "paired": test.paired}


def paired_dict(entry: PairedDifference) -> dict[str, Any]:
    """One entry of ``paired``: a, b, attack, eval_norm, eval_eps, variant, split, n, a_only,
    b_only, difference, ci_low, ci_high, p_value, p_holm, paired, checkpoint."""
    return {"a": entry.a, "b": entry.b, "attack": entry.attack, "eval_norm": entry.eval_norm,
            "eval_eps": entry.eval_eps, "variant": entry.variant, "split": entry.split,
            **_test_dict(entry.test, entry.p_holm), "checkpoint": entry.checkpoint}


def strongest_dict(entry: AgainstStrongest) -> dict[str, Any]:
    """One entry of ``against_strongest``: run, model, split, eval_norm, eval_eps, attack,
    variant, strongest, strongest_variant, then the keys of a ``paired`` entry from n on."""
    return {"run": entry.run, "model": entry.model, "split": entry.split,
            "eval_norm": entry.eval_norm, "eval_eps": entry.eval_eps, "attack": entry.attack,
            "variant": entry.variant, "strongest": entry.strongest,
            "strongest_variant": entry.strongest_variant,
            **_test_dict(entry.test, entry.p_holm)}


def comparison_dict(comparison: Comparison, sides: Sequence[RunSide]) -> dict[str, Any]:
    """The JSON of ``compare --format json`` (keys: runs, spec_diff, result_columns, results,
    metrics, curves, paired, against_strongest); per-run values are lists in the order of
    ``runs``."""
    return {
        "runs": [{"id": s.run_id, "experiment": s.experiment, "status": s.status}
                 for s in sides],
        "spec_diff": [{"path": d.path, "values": [None if v == MISSING else v for v in d.values]}
                      for d in comparison.spec_diff],
        "result_columns": list(comparison.result_columns),
        "results": [{**row.identity, "accuracy": list(row.values)} for row in comparison.results],
        "metrics": [{**row.identity, "values": list(row.values)} for row in comparison.metrics],
        "curves": [asdict(curve) for curve in comparison.curves],
        "paired": [paired_dict(entry) for entry in comparison.paired],
        "against_strongest": [strongest_dict(entry) for entry in comparison.against_strongest],
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


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _test_cells(test: DifferenceTest, p_holm: float) -> list[str]:
    return [_count(test.n), _count(test.a_only), _count(test.b_only), _points(test.difference),
            f"[{_points(test.ci_low)}, {_points(test.ci_high)}]", _p(test.p_value), _p(p_holm),
            "paired: McNemar" if test.paired else "unpaired: Fisher"]


TEST_HEADERS = ("n", "a only", "b only", "diff (pts)", "95% CI (pts)", "p", "p Holm", "test")


def difference_tables(comparison: Comparison) -> list[Table]:
    """The differences between runs, and each attack against the strongest of its ball (each
    table only when it has a row)."""
    paired = Table(title="differences a - b (percentage points; p Holm-adjusted over the table)",
                   header_style="bold", title_justify="left")
    for column in ("a", "b", "split", "eval_norm", "eval_eps", "attack", "variant"):
        paired.add_column(column)
    for column in TEST_HEADERS:
        paired.add_column(column, justify="left" if column == "test" else "right")
    for entry in comparison.paired:
        paired.add_row(*(_value(v) if v is not None else "-" for v in (
            entry.a, entry.b, entry.split, entry.eval_norm, entry.eval_eps, entry.attack,
            entry.variant)), *_test_cells(entry.test, entry.p_holm))

    strongest = Table(title="each attack against the strongest of its ball, same run "
                      "(a: the attack, b: the strongest)", header_style="bold",
                      title_justify="left")
    for column in ("run", "model", "split", "eval_norm", "eval_eps", "attack", "variant",
                   "strongest"):
        strongest.add_column(column)
    for column in TEST_HEADERS:
        strongest.add_column(column, justify="left" if column == "test" else "right")
    for item in comparison.against_strongest:
        label = item.strongest + (f" ({item.strongest_variant})" if item.strongest_variant else "")
        strongest.add_row(*(_value(v) if v is not None else "-" for v in (
            item.run, item.model, item.split, item.eval_norm, item.eval_eps, item.attack,
            item.variant, label)), *_test_cells(item.test, item.p_holm))
    return [table for table, entries in ((paired, comparison.paired),
                                         (strongest, comparison.against_strongest)) if entries]


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@friendly_errors
def compare_command(runs: Sequence[str], fmt: str) -> None:
    """Show RUNS side by side (ids or unique prefixes): spec diff, results, metrics, and the
    differences between them with their uncertainty.

    \b
    spec diff: every resolved-spec path whose value differs (∅: the run's spec lacks it);
    results: each evaluation's accuracy per run, lined up on model, split, threat model, eps
    and attack (training eps too, when a run holds several); metrics: each series' value at
    its last step. --format json adds every curve (a metric over steps) of every run.

    \b
    differences (json: "paired"): for every two runs a, b and every evaluation both have
    (same dataset, split, attack and its settings, eval_norm, eval_eps, variant, checkpoint):
    accuracy of a minus b with a 95% interval and a p-value. Paired when both rows kept
    per-example correctness bits and scored the same examples in the same order (the same
    dataset, dataset_hash, split and examples_hash; rows older than these columns are
    unpaired): a_only/b_only count the examples only a / only b gets right, Newcombe's
    score interval for paired proportions (1998, method 10) and the exact McNemar test
    (binomial test of the discordant pairs at 1/2). Otherwise unpaired (a_only/b_only null): Newcombe's hybrid score interval for
    independent proportions (1998, method 10) and Fisher's exact test. p_holm: Holm's
    step-down adjustment over all the differences shown.
    against_strongest: within each run, each attack minus the strongest (lowest-accuracy)
    attack of the same ball (model, training, split, norm, eps) on the same examples, with
    the same tests, Holm-adjusted over that list.
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
    for table in [*to_tables(comparison), *difference_tables(comparison)]:
        out.print(table)


COMMANDS: list[click.Command] = [compare_command]
