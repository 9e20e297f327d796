"""Evaluate runs beside the models they attacked: source run, TRADES β, worst row per attack,
AutoAttack's components left out, and the report section that shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.analysis.common import RunRecord
from service.analysis.evaluations import attack_keys, evaluated_models
from service.report.evaluations import evaluations_section
from service.report.inputs import ReportInputs

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(run_id: str, kind: str, spec: dict[str, Any], experiment: str = "e") -> RunRecord:
    return RunRecord(run_id, experiment, kind, T0 + timedelta(minutes=len(run_id)), 0,
                     {"name": experiment, **spec})


def row(run_id: str, attack: str, accuracy: float, *, eps: float = 0.1, norm: str = "linf",
        variant: str = "", method: str = "trades", n: int = 200) -> dict[str, Any]:
    clean = attack == "none"
    return {"run_id": run_id, "experiment": "aa", "kind": "evaluate", "model": "cnn",
            "dataset": "fashion_mnist", "split": "test", "train_norm": "linf",
            "train_eps": 0.1, "train_method": method, "eval_norm": None if clean else norm,
            "eval_eps": 0.0 if clean else eps, "attack": attack, "accuracy": accuracy,
            "n": n, "variant": variant}


@pytest.fixture
def sweep() -> tuple[list[dict[str, Any]], list[RunRecord]]:
    trained = run("t6", "train", {"adversary": {"method": "trades", "beta": 6.0}}, "tr")
    evaluation = run("ev01", "evaluate", {"source": {"run": "t6"}}, "aa")
    orphan = run("ev02", "evaluate", {"source": {"checkpoint": "/m.pt"}}, "aa")
    rows = [row("ev01", "none", 0.75), row("ev01", "pgd", 0.55), row("ev01", "pgd", 0.52),
            row("ev01", "autoattack", 0.48), row("ev01", "autoattack", 0.50, variant="apgd-ce"),
            row("ev01", "worst_case", 0.48),
            row("ev02", "none", 0.9, method="pgd"), row("ev02", "pgd", 0.3, norm="l2", eps=1.0,
                                                        method="pgd")]
    return rows, [trained, evaluation, orphan]


def test_an_evaluate_run_sits_beside_the_model_it_attacked(
    sweep: tuple[list[dict[str, Any]], list[RunRecord]]
) -> None:
    rows, runs = sweep
    by_id = {model.run_id: model for model in evaluated_models(rows, runs)}
    assert set(by_id) == {"ev01", "ev02"}, "train runs are not evaluations"
    model = by_id["ev01"]
    assert (model.source_run, model.source_experiment, model.train_method) == (
        "t6", "tr", "trades β=6")
    assert (model.clean, model.n) == (0.75, 200)
    assert model.attacks == {("pgd", "linf", 0.1): 0.52, ("autoattack", "linf", 0.1): 0.48,
                             ("worst_case", "linf", 0.1): 0.48}, \
        "the worst of two PGD rows; AutoAttack's components (variants) are not its accuracy"
    orphan = by_id["ev02"]
    assert (orphan.source_run, orphan.source_experiment, orphan.train_method) == (
        None, None, "pgd")
    assert attack_keys(by_id.values()) == [("pgd", "linf", 0.1), ("autoattack", "linf", 0.1),
                                           ("worst_case", "linf", 0.1), ("pgd", "l2", 1.0)]


def test_the_report_shows_each_evaluation_and_the_pgd_to_autoattack_gap(
    sweep: tuple[list[dict[str, Any]], list[RunRecord]]
) -> None:
    rows, runs = sweep
    section = evaluations_section(ReportInputs(runs, rows, [], []))  # type: ignore[arg-type]
    assert section is not None
    text = "\n".join(section.markdown)
    assert "| PGD linf 0.1 | AutoAttack linf 0.1 | worst case linf 0.1 | PGD l2 1 |" in text
    assert "tr `t6` | trades β=6 | linf | 0.1 | 200 | 75.00 | 52.00 | 48.00 | 48.00 | – |" in text
    assert "lower by 4.0 (trades β=6 linf 0.1; at linf 0.1) points" in text
    assert section.run_ids == {"ev01", "ev02", "t6"}
    assert "evaluations.tex" in section.tables


def test_no_evaluate_run_no_section() -> None:
    trained = run("t", "train", {})
    assert evaluations_section(ReportInputs([trained], [], [], [])) is None  # type: ignore[list-item]
