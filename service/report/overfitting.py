"""The robust-overfitting section: best against final checkpoint per run, and the validation
curves they come from (``service.analysis.overfitting``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from service.analysis.overfitting import OverfitRun, overfit_runs
from service.report.document import Section
from service.report.inputs import ReportInputs
from service.report.render import image, markdown_table, pct, png

OVERFITTING_TITLE = "Robust overfitting: the selected checkpoint against the final one"
FIGURE = "robust_overfitting.png"


def overfitting_section(inputs: ReportInputs) -> Section | None:
    """``None`` when no run recorded a validation curve (``dataset.validation``)."""
    found = overfit_runs(inputs.runs, inputs.rows, inputs.metrics)
    if not found:
        return None
    section = Section(OVERFITTING_TITLE)
    section.markdown.append(
        "Runs with a validation split (`dataset.validation`) record validation accuracy, clean "
        "and robust, after every epoch; `training.select` keeps the best epoch's weights as the "
        "`best` checkpoint. The best epoch is chosen on the validation split, never on the "
        "test split, so its test numbers are not selected on the test set (Rice et al. 2020: "
        "53.49% PGD accuracy at the best epoch, 45.59% at the last, for PreActResNet-18 on "
        "CIFAR-10). Test accuracies are under the strongest attack that evaluated both "
        "checkpoints; '–' means that checkpoint was not evaluated (`evaluation.checkpoints`).")
    header = ["run", "experiment", "epochs", "selected epoch", "selected by",
              "validation: selected", "validation: final", "test: best", "test: final",
              "attack"]
    section.markdown.append(markdown_table(header, [_row(run) for run in found]))
    section.figures[FIGURE] = _figure(found)
    section.markdown.append(image(FIGURE, "validation accuracy per epoch"))
    section.run_ids |= {run.run_id for run in found}
    return section


def _row(run: OverfitRun) -> list[str]:
    return [f"`{run.run_id}`", run.experiment, str(run.final_epoch),
            "–" if run.best_epoch is None else str(run.best_epoch),
            run.metric, pct(run.value_at(run.best_epoch)), pct(run.value_at(run.final_epoch)),
            pct(run.test_best), pct(run.test_final), run.attack or "–"]


def _figure(runs: Sequence[OverfitRun]) -> bytes:
    figure = Figure(figsize=(6.4, 3.6))
    axes = figure.add_subplot()
    for run in runs:
        epochs = [p.epoch for p in run.curve]
        robust = [math.nan if p.val_robust_accuracy is None else 100 * p.val_robust_accuracy
                  for p in run.curve]  # NaN: a gap in the line
        clean = [math.nan if p.val_accuracy is None else 100 * p.val_accuracy for p in run.curve]
        (line,) = axes.plot(epochs, robust, marker=".", label=f"{run.run_id} robust")
        axes.plot(epochs, clean, linestyle="--", color=line.get_color(),
                  label=f"{run.run_id} clean")
        if run.best_epoch is not None:
            axes.axvline(run.best_epoch, color=line.get_color(), linewidth=0.8, alpha=0.6)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title("Validation accuracy per epoch (vertical line: selected epoch)")
    axes.legend(fontsize=7)
    return png(figure)
