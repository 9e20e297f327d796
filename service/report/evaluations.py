"""The evaluations section: evaluate runs beside the models they attacked (AutoAttack on the
Figure 1 models, say), from ``service.analysis.evaluations``."""

from __future__ import annotations

from collections.abc import Sequence

from service.analysis.evaluations import (
    AttackKey,
    EvaluatedModel,
    attack_keys,
    attack_title,
    evaluated_models,
)
from service.analysis.scale import dataset_title
from service.report.document import Section
from service.report.inputs import ReportInputs
from service.report.render import latex_table, markdown_table, num, pct

EVALUATIONS_TITLE = "Evaluations of trained models (evaluate runs)"


def evaluations_section(inputs: ReportInputs) -> Section | None:
    """``None`` when the report holds no evaluate run."""
    runs = inputs.runs_of_kind("evaluate")
    models = evaluated_models(inputs.rows_of(runs), runs, inputs.runs)
    if not models:
        return None
    section = Section(EVALUATIONS_TITLE)
    section.markdown.append(
        "Each row is one `evaluate` run: the model it attacked (its training run, method, norm "
        "and ε_train), the test examples it used, and accuracy (%) clean and under each attack "
        "(AutoAttack: the ensemble's per-example worst case over its components). Attacks of "
        "one row ran on the same examples, so their differences are paired.")
    keys = attack_keys(models)
    header = ["dataset", "trained by", "method", "norm", "ε_train", "n", "clean",
              *map(attack_title, keys), "run"]
    body = [_row(model, keys) for model in models]
    section.markdown.append(markdown_table(header, body))
    gaps = _gaps(models)
    if gaps:
        section.markdown.append("Where PGD and AutoAttack ran at the same radius, AutoAttack's "
                                "accuracy is lower by " + "; ".join(gaps) + " points.")
    section.tables["evaluations.tex"] = latex_table(
        header[:-1], [row[:-1] for row in body], align="lllllr" + "r" * (len(header) - 7),
        caption="Accuracy (%) of trained models under the attacks of evaluate runs")
    section.run_ids |= {model.run_id for model in models}
    section.run_ids |= {model.source_run for model in models if model.source_run}
    return section


def _row(model: EvaluatedModel, keys: Sequence[AttackKey]) -> list[str]:
    source = (f"{model.source_experiment} `{model.source_run}`" if model.source_experiment
              else f"`{model.source_run}`" if model.source_run else "a checkpoint")
    return [dataset_title(model.dataset, npm_subset=False), source, model.train_method or "–",
            model.train_norm or "–", num(model.train_eps), str(model.n), pct(model.clean),
            *(pct(model.attacks.get(key)) for key in keys), f"`{model.run_id}`"]


def _gaps(models: Sequence[EvaluatedModel]) -> list[str]:
    gaps = []
    for model in models:
        for (attack, norm, eps), accuracy in model.attacks.items():
            pgd = model.attacks.get(("pgd", norm, eps))
            if attack == "autoattack" and pgd is not None:
                trained = ("standard" if not model.train_eps else
                           f"{model.train_method or '–'} {model.train_norm} "
                           f"{num(model.train_eps)}")
                gaps.append(f"{100 * (pgd - accuracy):.1f} ({trained}; at {norm} {num(eps)})")
    return gaps
