"""``export mlflow``: copy runs into an MLflow tracking store (optional extra robustlab[mlflow]).

``export robustbench``: a run's model and AutoAttack numbers as RobustBench's files
(``service.robustbench_export``; it imports torch only once the run's rows are known good).

MLflow is an optional dependency and takes seconds to import, so ``service.mlflow_export`` is
imported inside the command; without the extra the command says how to install it (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import click

from contract.specs.values import parse_number
from service.cli.common import UserError, err, friendly_errors, open_store, out
from service.robustbench_export import ExportError, Labels, export_run
from service.settings import get_settings

MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""A RobustBench model id, which names the two files (no path separators)."""


@click.group()
def export() -> None:
    """Export runs to other tools (MLflow, RobustBench)."""


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


@export.command("robustbench")
@click.argument("run_id", metavar="RUN")
@click.option("--out", "out_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write MODEL_ID.pt and MODEL_ID.json into.")
@click.option("--name", "model_id", required=True, metavar="MODEL_ID",
              help="RobustBench's model id, e.g. Smith2024Robust (the files' names).")
@click.option("--eps", default=None, metavar="EPS",
              help="The AutoAttack radius to report, e.g. 8/255 (default: the run's only one).")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default=None,
              help="The AutoAttack norm (default: the run's only one).")
@click.option("--title", default=None, help="The paper's title (model_info's name; default "
              "MODEL_ID).")
@click.option("--authors", default="", help="The authors, comma-separated.")
@click.option("--link", default="", help="Link to the paper.")
@click.option("--venue", default="", help="Venue, e.g. 'ICML 2024'.")
@click.option("--reported", default=None, metavar="ACC",
              help="Robust accuracy the paper reports, in percent (default: the run's AutoAttack).")
@click.option("--additional-data", is_flag=True, help="Trained with data beyond the training set.")
@click.option("--allow-subset", is_flag=True,
              help="Export an evaluation on part of the test set (the footnote says how many).")
@click.option("--allow-reduced", is_flag=True,
              help="Export an AutoAttack with fewer steps, queries or targets than the reference "
                   "(the footnote says which).")
@friendly_errors
def export_robustbench(run_id: str, out_dir: Path, model_id: str, eps: str | None,
                       norm: str | None, title: str | None, authors: str, link: str, venue: str,
                       reported: str | None, additional_data: bool, allow_subset: bool,
                       allow_reduced: bool) -> None:
    """Write RUN's model and accuracies as RobustBench's DIR/MODEL_ID.pt and DIR/MODEL_ID.json.

    \b
    The model: preact_resnet18 or wide_resnet with `normalization: none`, or dm_wide_resnet.
    The numbers: the run's clean and standard AutoAttack rows of one ball on the whole test
    split. Prints the RobustBench class call that loads the .pt with strict=True.
    """
    if not MODEL_ID.match(model_id):
        raise UserError(f"--name {model_id!r} is not a model id: letters, digits, '_', '-', '.'")
    try:
        radius = None if eps is None else float(parse_number(eps))
    except ValueError as exc:
        raise UserError(f"--eps: {exc}") from None
    labels = Labels(title=model_id if title is None else title, authors=authors, link=link,
                    venue=venue, reported=reported, additional_data=additional_data)
    store = open_store()
    try:
        done = export_run(store, run_id, out_dir=out_dir, model_id=model_id, eps=radius,
                          norm=norm, labels=labels, allow_subset=allow_subset,
                          allow_reduced=allow_reduced, data_dir=get_settings().data_dir)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    out.print(f"{done.run_id} -> {done.checkpoint} and {done.model_info}: "
              f"{done.info['architecture']}, clean {done.info['clean_acc']}%, AutoAttack "
              f"{done.ball} {done.info['autoattack_acc']}%", markup=False)
    out.print(f"load with robustbench.model_zoo.architectures.{done.constructor}", markup=False)


COMMANDS: list[click.Command] = [export]
