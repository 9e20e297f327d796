"""The two plain sentences `run` ends with when a spec holds the trade-off."""

from __future__ import annotations

from typing import Any

from service.cli.running import tradeoff_sentences


def row(run: str, train_eps: float | None, attack: str, eval_eps: float,
        accuracy: float) -> dict[str, Any]:
    return {"run_id": run, "train_eps": train_eps, "train_method": "fgsm_rs", "split": "test",
            "attack": attack, "eval_norm": None if attack == "none" else "linf",
            "eval_eps": eval_eps, "accuracy": accuracy}


def test_the_tradeoff_in_numbers() -> None:
    rows = [row("s", 0.0, "none", 0, 0.99), row("s", 0.0, "pgd", 0.2, 0.05),
            row("s", 0.0, "apgd", 0.2, 0.03), row("r", 0.25, "none", 0, 0.96),
            row("r", 0.25, "pgd", 0.2, 0.66), row("r", 0.25, "worst_case", 0.2, 0.62)]
    _, first, second, nxt = tradeoff_sentences(rows)
    assert "99.0%" in first and "3.0% under the strongest attack at linf eps 0.2" in first
    assert "(fgsm_rs, eps 0.25): 96.0% right, 62.0% under attack" in first
    assert second == ("Robustness gained: +59.0 points under attack, for 3.0 points of "
                      "standard accuracy given up.")
    assert "robustlab dashboard" in nxt and "robustlab report" in nxt


def test_nothing_to_say_without_both_models_in_one_ball() -> None:
    assert tradeoff_sentences([row("s", 0.0, "none", 0, 0.99),
                               row("s", 0.0, "pgd", 0.2, 0.05)]) == []
    assert tradeoff_sentences([row("s", 0.0, "none", 0, 0.99), row("s", 0.0, "pgd", 0.2, 0.05),
                               row("r", 0.3, "none", 0, 0.9),
                               row("r", 0.3, "pgd", 0.3, 0.6)]) == []


def test_one_run_holding_both_models_compares_them_not_itself() -> None:
    """A theory or linear-features run holds the standard and the adversarially trained model;
    the sentence compares those two, never a model with itself, and skips transfer rows."""
    rows = [row("t", 0.0, "none", 0, 0.99), row("t", 0.0, "exact_linear", 0.2, 0.37),
            row("t", 0.2, "none", 0, 0.96), row("t", 0.2, "exact_linear", 0.2, 0.72),
            {**row("t", 0.2, "exact_linear", 0.2, 0.01), "variant": "transfer:svm->linear"}]
    for r in rows:
        r["model"] = "linear"
    _, first, second, _ = tradeoff_sentences(rows)
    assert "99.0% of the test images right, 37.0% under" in first
    assert "(fgsm_rs, eps 0.2): 96.0% right, 72.0% under attack" in first
    assert second.startswith("Robustness gained: +35.0 points")


def test_models_of_different_architectures_are_not_compared() -> None:
    rows = [{**row("t", 0.0, "none", 0, 1.0), "model": "averaging"},
            {**row("t", 0.0, "exact_linear", 0.2, 0.0), "model": "averaging"},
            {**row("t", 0.2, "none", 0, 0.7), "model": "svm"},
            {**row("t", 0.2, "exact_linear", 0.2, 0.7), "model": "svm"}]
    assert tradeoff_sentences(rows) == []
