"""The report's robust-overfitting section: the selected epoch, best against final."""

from __future__ import annotations

from pathlib import Path

from contract.records import EvaluationRecord, MetricRecord
from service.report import build_report, collect
from service.report.overfitting import OVERFITTING_TITLE
from service.store import migrate
from service.store.entities import NewRun
from service.store.repository import Store
from service.store.storage import LocalStorage

CURVE = {1: (0.50, 0.20), 2: (0.60, 0.34), 3: (0.66, 0.31), 4: (0.70, 0.27)}
"""epoch -> (val_accuracy, val_robust_accuracy): robust accuracy peaks at epoch 2."""


def seeded_store(tmp_path: Path, *, selected: dict[str, object] | None) -> Store:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(tmp_path / "artifacts"))
    store.add_spec("s", "overfit", "train", None, "kind: train\n", {})
    (run,) = store.add_runs("s", [NewRun(id="overfit00001", experiment="overfit", kind="train",
                                         cell=0, params={}, resolved_spec={}, spec_hash="h",
                                         seed=0)])
    metrics = [MetricRecord(name=name, value=value, step=epoch)
               for epoch, pair in CURVE.items()
               for name, value in zip(("val_accuracy", "val_robust_accuracy"), pair, strict=True)]
    common = dict(model="preact_resnet18", dataset="cifar10", n=1000, train_norm="linf",
                  train_eps=8 / 255)
    rows = [EvaluationRecord(accuracy=0.64, checkpoint="best", **common),
            EvaluationRecord(accuracy=0.71, **common)]
    for checkpoint, accuracy in (("best", 0.33), ("final", 0.26)):
        rows.append(EvaluationRecord(accuracy=accuracy, checkpoint=checkpoint, attack="pgd",
                                     eval_norm="linf", eval_eps=8 / 255, steps=10, **common))
    store.write_records(run.id, evaluations=rows, metrics=metrics)
    if selected is not None:
        store.add_provenance(run.id, selected=selected)
    store.finish_run(run.id, "succeeded")
    return store


def test_the_section_shows_the_selected_epoch_and_best_against_final(tmp_path: Path) -> None:
    store = seeded_store(tmp_path, selected={"checkpoint": "best", "epoch": 2,
                                             "metric": "val_robust_accuracy", "value": 0.34})
    report = build_report(collect(store))
    (section,) = [s for s in report.sections if s.title == OVERFITTING_TITLE]
    table = next(part for part in section.markdown if part.startswith("| run"))
    row = table.splitlines()[2]
    assert "| `overfit00001` | overfit | 4 | 2 | val_robust_accuracy | 34.00 | 27.00 | 33.00 | " \
           "26.00 |" in row
    assert section.figures["robust_overfitting.png"].startswith(b"\x89PNG")


def test_without_provenance_the_best_epoch_is_the_validation_argmax(tmp_path: Path) -> None:
    store = seeded_store(tmp_path, selected=None)
    (section,) = [s for s in build_report(collect(store)).sections
                  if s.title == OVERFITTING_TITLE]
    assert "| 4 | 2 | val_robust_accuracy |" in section.markdown[1]


def test_no_validation_curve_no_section(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(tmp_path / "artifacts"))
    assert all(s.title != OVERFITTING_TITLE for s in build_report(collect(store)).sections)
