"""Evaluate runs of trained models: each model's clean and attacked accuracies, side by side.

An ``evaluate`` run attacks one checkpoint, often with an attack its training run did not run
(AutoAttack on a model that PGD evaluated). This is the one place that puts such a run beside
the model it evaluated: the source run (``source: {run: ID}``) names the training experiment
and, for TRADES, β (labelled as Figure 1 labels it). Per run, every attack's ensemble row
(``variant`` empty) counts; several rows of one attack at one radius keep the worst.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from service.analysis.common import Row, RunFacts, attack_name, is_clean, norm_rank
from service.analysis.figure1 import dataset_rank, method_label

AttackKey = tuple[str, str | None, float]
"""(attack, eval_norm, eval_eps)."""
ATTACK_ORDER = ("fgsm", "pgd", "apgd", "fab", "square", "autoattack")
"""Weaker to stronger, roughly; other attacks follow, and the per-example worst case is last."""


@dataclass(frozen=True)
class EvaluatedModel:
    """One evaluate run: the model it attacked and what each attack left of its accuracy."""

    run_id: str
    experiment: str
    source_run: str | None
    """The training run whose final checkpoint was attacked (``None``: a checkpoint path)."""
    source_experiment: str | None
    dataset: str
    model: str
    train_method: str | None
    """As Figure 1 names it: ``trades β=B`` for TRADES when the source run is known."""
    train_norm: str | None
    train_eps: float | None
    """None when unknown: a checkpoint trained elsewhere, not declared (``trained_with``)."""
    n: int
    clean: float | None
    attacks: dict[AttackKey, float] = field(default_factory=dict)


def evaluated_models(rows: Iterable[Row], runs: Iterable[RunFacts],
                     sources: Iterable[RunFacts] = ()) -> list[EvaluatedModel]:
    """The evaluate runs among ``runs``; ``sources`` are runs they may name (any kind)."""
    runs = list(runs)
    known = {run.id: run for run in [*sources, *runs]}
    by_run: dict[str, list[Row]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    found = []
    for run in runs:
        mine = [row for row in by_run.get(run.id, []) if not row["variant"]]
        if run.kind != "evaluate" or not mine:
            continue
        source = (run.resolved_spec.get("source") or {}).get("run")
        origin = known.get(source) if source else None
        first = mine[0]
        attacks: dict[AttackKey, float] = {}
        for row in mine:
            if is_clean(row):
                continue
            key = (str(row["attack"]), row["eval_norm"], float(row["eval_eps"]))
            attacks[key] = min(attacks.get(key, 1.0), float(row["accuracy"]))
        clean = next((float(row["accuracy"]) for row in mine if is_clean(row)), None)
        method = first.get("train_method")
        found.append(EvaluatedModel(
            run.id, run.experiment, source, origin.experiment if origin else None,
            str(first["dataset"]), str(first["model"]),
            method_label(method, origin) if origin else method, first["train_norm"],
            None if first["train_eps"] is None else float(first["train_eps"]), int(first["n"]),
            clean, attacks))
    return sorted(found, key=_order)


def attack_keys(models: Iterable[EvaluatedModel]) -> list[AttackKey]:
    """Every attack of the models, in a stable order: by norm, radius, then attack."""
    keys = {key for model in models for key in model.attacks}
    return sorted(keys, key=lambda key: (norm_rank(key[1]), key[2], _attack_rank(key[0])))


def attack_title(key: AttackKey) -> str:
    """"AutoAttack linf 0.1": the column of one attack at one radius (report and dashboard)."""
    attack, norm, eps = key
    return f"{attack_name(attack)} {norm} {eps:.4g}"


FACT_COLUMNS = ("run_id", "dataset", "source_experiment", "source_run", "train_method",
                "train_norm", "train_eps", "n")
"""``evaluated_frame``'s columns that describe the run; the others ("clean" and one per
``attack_title``) are accuracies."""


def evaluated_frame(models: Iterable[EvaluatedModel]) -> pd.DataFrame:
    """One row per evaluate run: the ``FACT_COLUMNS``, then accuracies (fractions): "clean"
    and one column per ``attack_title``."""
    models = list(models)
    keys = attack_keys(models)
    records = [{
        **{column: getattr(m, column) for column in FACT_COLUMNS}, "clean": m.clean,
        **{attack_title(key): m.attacks.get(key) for key in keys},
    } for m in models]
    return pd.DataFrame(records, columns=[*FACT_COLUMNS, "clean", *map(attack_title, keys)])


def _attack_rank(attack: str) -> int:
    if attack == "worst_case":
        return len(ATTACK_ORDER) + 1
    return ATTACK_ORDER.index(attack) if attack in ATTACK_ORDER else len(ATTACK_ORDER)


def _order(model: EvaluatedModel) -> tuple[object, ...]:
    return (dataset_rank(model.dataset), model.dataset, model.source_experiment or "",
            norm_rank(model.train_norm) if model.train_eps else -1, model.train_method or "",
            -1.0 if model.train_eps is None else model.train_eps, model.run_id)
