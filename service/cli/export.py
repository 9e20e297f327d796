"""``export mlflow``: copy runs into an MLflow tracking store (optional extra robustlab[mlflow]).

MLflow is an optional dependency and takes seconds to import, so ``service.mlflow_export`` is
imported inside the command; without the extra the command says how to install it (exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from service.cli.common import UserError, err, friendly_errors, open_store, out


@click.group()
def export() -> None:
    """Export runs to other tools (MLflow)."""


@export.command("mlflow")
@click.option("--tracking-uri", required=True, metavar="URI",
              help="MLflow tracking URI: http://host:5000, sqlite:///mlflow.db, or a folder.")
@click.option("--experiment", default=None, metavar="NAME",
              help="Only runs of this robustlab experiment (default: every run).")
@click.option("--run", "run_ids", multiple=True, metavar="RUN",
              help="Only these runs (repeatable; unique id prefixes are enough).")
@click.option("--mlflow-experiment", default=None, metavar="NAME",
              help="Put every run in this MLflow experiment (default: one per robustlab "
                   "experiment, of the same name).")
@friendly_errors
def export_mlflow(tracking_uri: str, experiment: str | None, run_ids: Sequence[str],
                  mlflow_experiment: str | None) -> None:
    """Create or update one MLflow run per robustlab run (matched by the robustlab.run_id tag).

    \b
    params: the flattened resolved spec; metrics: every metric (tags folded into the key,
    every step) and every evaluation row's accuracy; artifacts: the run's files; tags: the
    provenance. Exporting again updates those runs and never duplicates them.
    """
    try:
        from service.mlflow_export import export_runs  # optional extra, slow to import
    except ImportError as exc:
        raise UserError(f"MLflow is not installed ({exc.name}): pip install "
                        "'robustlab[mlflow]'") from None
    store = open_store()
    try:
        exported = export_runs(store, tracking_uri, experiment=experiment, run_ids=run_ids,
                               mlflow_experiment=mlflow_experiment)
    finally:
        store.close()
    if not exported:
        err.print("no runs to export" + (f" in experiment {experiment!r}" if experiment else ""))
        return
    for item in exported:
        verb = "created" if item.created else "updated"
        out.print(f"{item.run_id} -> mlflow run {item.mlflow_run_id} (experiment "
                  f"{item.mlflow_experiment_id}) {verb}: {item.params} params, {item.metrics} "
                  f"metrics, {item.artifacts} artifacts", markup=False)


COMMANDS: list[click.Command] = [export]
