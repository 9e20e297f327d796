"""Export a run as RobustBench's files (``robustlab export robustbench``).

``export_run`` writes ``DIR/MODEL_ID.pt`` (``{"state_dict": ...}`` in the key layout of
RobustBench's class, loadable with ``strict=True``) and ``DIR/MODEL_ID.json`` (the keys of
RobustBench's ``model_info`` files). The accuracies are the run's own result rows: the clean row
and the standard AutoAttack row of one ball on the test split, as percentages with two decimals.
RobustBench's numbers are AutoAttack's reference settings on the whole test set, so a subset
(``allow_subset``) or fewer steps, queries or targets (``allow_reduced``) are refused unless
asked for, and then stated in the footnote. ``external`` is the run's per-example worst case
over all its attacks of that ball, when that is lower than AutoAttack alone.

This module picks the rows and writes the JSON (no torch); the model is loaded and converted by
``workers.science.export``, imported only once the rows are known to be good.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.specs.architecture import ModelConfig
from contract.specs.data import DatasetConfig
from service.store.entities import RunInfo
from service.store.repository import Store

REFERENCE_STEPS = 100
REFERENCE_QUERIES = 5000
REFERENCE_TARGETS = 9
"""AutoAttack's standard settings (Croce & Hein 2020), the ones RobustBench evaluates with."""


class ExportError(ValueError):
    """A run that cannot be exported as asked; the message is one line saying why."""


@dataclass(frozen=True)
class Labels:
    """What the paper says about the model: model_info's link, name, authors, venue, ..."""

    title: str
    authors: str = ""
    link: str = ""
    venue: str = ""
    reported: str | None = None
    """Robust accuracy the paper reports, in percent; default: the run's AutoAttack accuracy."""
    additional_data: bool = False


@dataclass(frozen=True)
class Exported:
    """What ``export_run`` wrote, for the command to show."""

    run_id: str
    checkpoint: Path
    model_info: Path
    info: dict[str, Any]
    ball: str
    constructor: str


def eps_text(eps: float) -> str:
    """RobustBench's way of writing a radius: ``8/255`` when it is a whole number of 255ths."""
    scaled = eps * 255
    if round(scaled) > 0 and abs(scaled - round(scaled)) < 1e-6:
        return f"{round(scaled)}/255"
    return f"{eps:g}"


def percent(accuracy: float) -> str:
    """A fraction in [0, 1] as RobustBench writes it: 0.8534 -> ``85.34``."""
    return f"{100 * accuracy:.2f}"


def _ball(row: dict[str, Any]) -> str:
    return f"{row['eval_norm']} {eps_text(row['eval_eps'])}"


def _same_eps(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def pick_rows(run: RunInfo, rows: list[dict[str, Any]], *, eps: float | None, norm: str | None
              ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(clean row, standard AutoAttack row, worst-case row or None) of one ball, test split,
    of the checkpoint the run stands for (``training.select``: final, or best)."""
    chosen_checkpoint = selected_checkpoint(run)
    test = [row for row in rows if row["split"] == "test"
            and (row.get("checkpoint") or "final") == chosen_checkpoint]
    autoattack = [row for row in test if row["attack"] == "autoattack" and row["variant"] == ""]
    if not autoattack:
        which = "" if chosen_checkpoint == "final" else f" of its {chosen_checkpoint} checkpoint"
        raise ExportError(f"run {run.id} has no standard AutoAttack row{which} on the test "
                          "split: evaluate it first, e.g. evaluation.attacks: [{kind: "
                          "autoattack, norm: linf, eps: 8/255}]")
    chosen = [row for row in autoattack
              if (norm is None or row["eval_norm"] == norm)
              and (eps is None or _same_eps(row["eval_eps"], eps))]
    if not chosen:
        wanted = " ".join(part for part in (norm, None if eps is None else eps_text(eps)) if part)
        raise ExportError(f"run {run.id} has no standard AutoAttack row at {wanted}: it has "
                          f"{', '.join(sorted({_ball(row) for row in autoattack}))}")
    balls = sorted({_ball(row) for row in chosen})
    if len(balls) > 1:
        raise ExportError(f"run {run.id} has standard AutoAttack rows at {', '.join(balls)}: "
                          "choose one with --eps (and --norm)")
    if len(chosen) > 1:
        raise ExportError(f"run {run.id} has {len(chosen)} standard AutoAttack rows at "
                          f"{balls[0]} with different settings; RobustBench takes one")
    (row,) = chosen
    clean = [r for r in test if r["attack"] == "none" and r["variant"] == ""]
    if not clean:
        raise ExportError(f"run {run.id} has no clean accuracy row on the test split")
    worst = [r for r in test if r["attack"] == "worst_case" and r["eval_norm"] == row["eval_norm"]
             and _same_eps(r["eval_eps"], row["eval_eps"])]
    return clean[0], row, (worst[0] if len(worst) == 1 else None)


def selected_checkpoint(run: RunInfo) -> str:
    """'best' when the run's ``training.select`` chose a best epoch, else 'final'."""
    return str((run.provenance.get("selected") or {}).get("checkpoint") or "final")


def evaluated_subset(run: RunInfo) -> int | None:
    """The N of ``evaluation.subset`` or ``dataset.test_subset`` in the run's spec, if any."""
    spec = run.resolved_spec
    subset = (spec.get("evaluation") or {}).get("subset")
    return subset if subset is not None else (spec.get("dataset") or {}).get("test_subset")


def reduced_settings(row: dict[str, Any], num_classes: int | None) -> str | None:
    """AutoAttack's settings with the reference beside them when they fall below it, else None.

    ``"3 APGD/FAB steps, 10 Square queries and 3 target classes (reference: 100, 5000, 3)"``;
    the reference targets are 9, or every other class of a dataset with fewer than 10
    (``num_classes`` None: the targets are not judged, only steps and queries).
    """
    details = row.get("details") or {}
    steps, queries = row.get("steps"), details.get("queries")
    targets = details.get("n_target_classes")
    reference_targets = REFERENCE_TARGETS if num_classes is None else min(REFERENCE_TARGETS,
                                                                          num_classes - 1)
    if ((steps is None or steps >= REFERENCE_STEPS)
            and (queries is None or queries >= REFERENCE_QUERIES)
            and (num_classes is None or targets is None or targets >= reference_targets)):
        return None
    return (f"{steps} APGD/FAB steps, {queries} Square queries and {targets} target classes "
            f"(reference: {REFERENCE_STEPS}, {REFERENCE_QUERIES}, {reference_targets})")


def model_info(*, clean: dict[str, Any], autoattack: dict[str, Any],
               worst: dict[str, Any] | None, architecture: str, labels: Labels,
               footnotes: list[str]) -> dict[str, Any]:
    """RobustBench's ``model_info`` JSON, in their key order."""
    info: dict[str, Any] = {
        "link": labels.link,
        "name": labels.title,
        "authors": labels.authors,
        "additional_data": labels.additional_data,
        "number_forward_passes": 1,
        "dataset": autoattack["dataset"],
        "venue": labels.venue,
        "architecture": architecture,
        "eps": eps_text(autoattack["eval_eps"]),
        "clean_acc": percent(clean["accuracy"]),
        "reported": labels.reported if labels.reported is not None
        else percent(autoattack["accuracy"]),
        "autoattack_acc": percent(autoattack["accuracy"]),
    }
    if footnotes:
        info["footnote"] = " ".join(footnotes)
    if worst is not None and worst["accuracy"] < autoattack["accuracy"]:
        info["external"] = percent(worst["accuracy"])  # another attack of the run found more
    return info


def model_source(store: Store, run: RunInfo
                 ) -> tuple[Path, ModelConfig | None, DatasetConfig | None]:
    """(checkpoint file, ``source.model``, dataset) of the model the run evaluated."""
    spec = run.resolved_spec
    if run.kind == "train":
        checkpoint = store.selected_checkpoint(run.id)  # the weights of its selected rows
        if checkpoint is None:
            raise ExportError(f"run {run.id} has no {selected_checkpoint(run)} checkpoint")
        return Path(checkpoint.path), None, None
    if run.kind != "evaluate":
        raise ExportError(f"run {run.id} is a {run.kind} run: export takes train and evaluate "
                          "runs")
    source = spec.get("source") or {}
    model = ModelConfig.model_validate(source["model"]) if source.get("model") else None
    dataset = DatasetConfig.model_validate(spec["dataset"]) if spec.get("dataset") else None
    if run.provenance.get("checkpoint"):  # the file the run actually read
        return Path(run.provenance["checkpoint"]), model, dataset
    if source.get("checkpoint"):
        return Path(source["checkpoint"]).expanduser(), model, dataset
    checkpoint = store.selected_checkpoint(store.get_run(str(source.get("run"))).id)
    if checkpoint is None:
        raise ExportError(f"run {source.get('run')} (the source of {run.id}) has no checkpoint")
    return Path(checkpoint.path), model, dataset


def _refuse_reduced(run: RunInfo, reduced: str | None) -> None:
    if reduced is not None:
        raise ExportError(f"run {run.id} ran AutoAttack with {reduced}: RobustBench reports the "
                          "reference settings; --allow-reduced exports it anyway, saying so in "
                          "the footnote")


def export_run(store: Store, run_id: str, *, out_dir: Path, model_id: str, eps: float | None,
               norm: str | None, labels: Labels, allow_subset: bool, allow_reduced: bool,
               data_dir: Path) -> Exported:
    """Write RUN's RobustBench checkpoint and model_info; ExportError (one line) if it cannot."""
    run = store.get_run(run_id)
    clean, autoattack, worst = pick_rows(run, store.results(run_ids=[run.id]), eps=eps, norm=norm)
    footnotes: list[str] = []
    if evaluated_subset(run) is not None:
        if not allow_subset:
            raise ExportError(f"run {run.id} evaluated {autoattack['n']} test examples, not the "
                              "whole test set as RobustBench does: --allow-subset exports it "
                              "anyway, saying so in the footnote")
        footnotes.append(f"Evaluated on the first {autoattack['n']} test examples only.")
    if not allow_reduced:  # steps and queries now; the targets need the model's classes
        _refuse_reduced(run, reduced_settings(autoattack, num_classes=None))
    path, model_cfg, dataset = model_source(store, run)

    from workers.science import export as science  # torch: only once the rows are known good
    from workers.science.datasets import dataset_info

    def info_for() -> Any:
        if dataset is None:
            raise ExportError(f"run {run.id} names no dataset for its checkpoint {path}")
        return dataset_info(dataset, data_dir)

    try:
        model, meta = science.load_for_export(path, model_cfg=model_cfg, info_for=info_for)
        converted = science.robustbench_model(model, meta["arch"],
                                              dict(meta.get("model_kwargs") or {}))
    except ValueError as exc:  # ExportRefused, WeightsMismatch, ModelBuildError, data errors
        text = str(exc).strip()
        raise ExportError(text.splitlines()[0] if text else type(exc).__name__) from None
    reduced = reduced_settings(autoattack, converted.num_classes)
    if reduced is not None:
        if not allow_reduced:
            _refuse_reduced(run, reduced)
        footnotes.append(f"AutoAttack with {reduced}.")
    info = model_info(clean=clean, autoattack=autoattack, worst=worst,
                      architecture=converted.architecture, labels=labels, footnotes=footnotes)
    checkpoint = science.write_robustbench_checkpoint(converted, out_dir / f"{model_id}.pt")
    json_path = out_dir / f"{model_id}.json"
    json_path.write_text(json.dumps(info, indent=2) + "\n")
    return Exported(run.id, checkpoint, json_path, info, _ball(autoattack), converted.constructor)
