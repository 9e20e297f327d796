"""Verdicts with evidence: holds / does not hold / unresolved / no data, Holm over the family.

Holm's step-down is checked on a hand-made family (adjusted p-values computed by hand), the
one-sided tests against scipy (``norm``, ``ttest_ind_from_stats``), and the claims themselves:
a Table 4 claim that holds at n = 20,000 reads ``unresolved`` at n = 50 with the same
accuracies, and says how many examples would settle it; comparisons say they are unpaired.
"""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from service.analysis.claims import VERDICT_LABELS, settle_claims, table4_claims
from service.analysis.evidence import (
    VERDICTS,
    Measure,
    Test,
    by_value,
    difference,
    settle,
    threshold,
)
from service.analysis.table4 import Table4Row


def against_only(p: float) -> Test:
    """A bound-like test: consistent with its claim, contradicted when p is rejected."""
    return Test("hand-made", 0.0, None, None, None, p, 100, 1, None, consistent=True)


def test_holm_on_a_hand_made_family() -> None:
    p_values = [0.01, 0.04, 0.03, 0.005, 0.5]
    # by hand, m = 5: 0.005·5 = 0.025, 0.01·4 = 0.04, 0.03·3 = 0.09, max(0.04·2, 0.09) = 0.09,
    # max(0.5·1, 0.09) = 0.5
    expected_holm = [0.04, 0.09, 0.09, 0.025, 0.5]
    tests: list[Test | None] = [against_only(p) for p in p_values]
    tests += [by_value(True, 1.0, "deterministic"), None]  # neither joins the family
    found = settle(tests)
    verdicts = [verdict for verdict, _ in found]
    assert verdicts == ["does not hold", "holds", "holds", "does not hold", "holds", "holds",
                        "no data"]
    for (_, test), p, adjusted in zip(found, p_values, expected_holm, strict=False):
        assert test is not None and test.p == p
        assert test.p_holm == pytest.approx(adjusted, rel=1e-12)
    assert set(verdicts) <= set(VERDICTS) and set(VERDICTS) == set(VERDICT_LABELS)


def test_a_claim_shown_alone_can_be_unresolved_in_a_larger_family() -> None:
    """p = 0.03 two-sided is rejected alone, not among three (Holm: 0.03·3 > 0.05)."""
    z = scipy_stats.norm.isf(0.015)  # one-sided 0.015: two-sided 0.03
    shown = Test("z", 0.01, None, None, scipy_stats.norm.sf(z), scipy_stats.norm.cdf(z), 1000,
                 1, False, z)
    assert settle([shown])[0][0] == "holds"
    family = settle([shown, against_only(0.9), against_only(0.9)])
    assert family[0][0] == "unresolved" and "examples would settle it" in family[0][1].needed


def test_one_sided_tests_agree_with_scipy() -> None:
    a, b = Measure(0.72, 2000), Measure(0.70, 2000)
    found = difference(a, b)
    se = math.sqrt(0.72 * 0.28 / 2000 + 0.70 * 0.30 / 2000)
    assert found.p_holds == pytest.approx(scipy_stats.norm.sf(0.02 / se), rel=1e-9)
    assert found.paired is False and found.n == 2000
    over_seeds = difference(Measure(0.90, 10_000, 3, 0.012), Measure(0.86, 10_000, 4, 0.015))
    reference = scipy_stats.ttest_ind_from_stats(0.90, 0.012, 3, 0.86, 0.015, 4,
                                                 equal_var=False, alternative="greater")
    assert over_seeds.p_holds == pytest.approx(reference.pvalue, rel=1e-6)
    assert over_seeds.seeds == 3
    above = threshold(Measure(0.995, 10_000), 0.99, above=True)
    assert above.p_holds == pytest.approx(
        scipy_stats.norm.sf(0.005 / math.sqrt(0.99 * 0.01 / 10_000)), rel=1e-9)


def table4(n: int) -> list[Table4Row]:
    return [Table4Row("standard", 0.0, (0.99, 0.72, 0.10, 0.15), n, 40.0, None, "s"),
            Table4Row("adversarial", 0.2, (0.95, 0.70, 0.80, 0.76), n, 14.0, None, "a")]


def test_a_claim_that_holds_at_20000_examples_is_unresolved_at_50() -> None:
    large = settle_claims(table4_claims(table4(20_000), "run it"))
    small = settle_claims(table4_claims(table4(50), "run it"))
    assert [c.verdict for c in large] == ["holds", "holds", "holds"]
    assert [c.verdict for c in small] == ["unresolved", "holds", "holds"]
    standard = small[0]
    assert standard.test is not None and standard.test.p_holm is not None
    assert standard.test.p_holm > 0.05 and large[0].test is not None
    assert large[0].test.p_holm is not None and large[0].test.p_holm < 0.05
    # z ≈ 0.22 at n = 50; at the family's level (2 tested claims) z ≈ 2.24 is needed: about
    # (2.24 / 0.22)² × 50 ≈ 5,000 examples
    assert "examples would settle it" in standard.detail
    needed = int(standard.test.needed.split()[1].replace(",", ""))
    assert 3_000 < needed < 8_000
    # the ‖w‖₁ claim is deterministic: compared by value, not in the family
    assert large[2].test is not None and large[2].test.by_value
    assert "compared by value" in large[2].detail


def test_an_unpaired_comparison_is_flagged_as_such() -> None:
    (claim, *_) = settle_claims(table4_claims(table4(20_000), "run it"))
    assert claim.test is not None and claim.test.paired is False
    assert "; unpaired" in claim.detail
    assert "95% CI [" in claim.detail and "n = 20,000" in claim.detail
    assert "seeds = 1" in claim.detail and "p = " in claim.detail
