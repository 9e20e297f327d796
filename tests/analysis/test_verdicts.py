"""Verdicts with evidence: holds / does not hold / unresolved / no data, Holm over the family.

Holm's step-down is checked on a hand-made family (adjusted p-values computed by hand), the
one-sided tests against scipy (``norm``, ``ttest_ind_from_stats``), and the claims themselves:
a Table 4 claim that holds at n = 20,000 reads ``unresolved`` at n = 50 with the same
accuracies, and says how many examples would settle it; comparisons say whether they are
paired (models scored on the same examples: the exact McNemar test) or unpaired.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from service.analysis.claims import (
    VERDICT_LABELS,
    Claim,
    both_measured,
    robust_higher_claim,
    settle_claims,
    table4_claims,
)
from service.analysis.evidence import (
    VERDICTS,
    Measure,
    Test,
    by_value,
    difference,
    paired_mean,
    settle,
    threshold,
)
from service.analysis.gallery import Measured, ModelLabel
from service.analysis.pairing import Outcome
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


def scored(correct: list[bool], *, examples: str = "first") -> Outcome:
    """A model's outcomes on n examples, packed as the store keeps them."""
    bits = np.packbits(np.array(correct, dtype=bool)).tobytes()
    return Outcome(sum(correct) / len(correct), len(correct), "binary_mnist", "test", bits,
                   "data", examples)


def test_models_scored_on_the_same_examples_are_compared_paired() -> None:
    """Two accuracies 2 points apart on 2,000 examples: unpaired, unresolved; paired (they
    disagree on 40 examples, all in a's favour), the exact McNemar test settles it. The p-value
    is scipy's binomial tail; a_only − b_only = n × difference."""
    n, a_only = 2_000, 40
    b_correct = [i % 2 == 0 for i in range(n)]
    a_correct = [c or i < 2 * a_only and i % 2 == 1 for i, c in enumerate(b_correct)]
    a_out, b_out = scored(a_correct), scored(b_correct)
    a = Measure(a_out.accuracy, n, outcome=a_out)
    b = Measure(b_out.accuracy, n, outcome=b_out)
    found = difference(a, b, name="a above b")
    assert found.paired is True and "exact McNemar" in found.name
    assert found.p_holds == pytest.approx(scipy_stats.binom.sf(a_only - 1, a_only, 0.5))
    assert a_only == pytest.approx(n * found.estimate)
    assert found.ci_low is not None and found.ci_low > 0
    unpaired = difference(Measure(a.value, n), Measure(b.value, n))
    assert unpaired.paired is False and unpaired.p_holds is not None
    assert found.p_holds is not None and unpaired.p_holds > 0.05 > found.p_holds
    # other examples of the same size: not paired
    other = Measure(b.value, n, outcome=scored(b_correct, examples="others"))
    assert difference(a, other).paired is False


def test_table4_claims_are_paired_when_both_models_scored_the_same_examples() -> None:
    rng = np.random.default_rng(0)
    n = 400
    std_clean, adv_clean = rng.random(n) < 0.98, rng.random(n) < 0.95
    std_adv, adv_adv = rng.random(n) < 0.35, rng.random(n) < 0.72
    rows = [Table4Row(training, eps, (0.99, clean.mean(), 0.4, attacked.mean()), n, weight,
                      None, training[0], (scored(list(clean)), scored(list(attacked))))
            for training, eps, clean, attacked, weight in
            (("standard", 0.0, std_clean, std_adv, 28.0), ("adversarial", 0.2, adv_clean,
                                                           adv_adv, 9.0))]
    first, second, _ = settle_claims(table4_claims(rows, "run it"))
    for claim in (first, second):
        assert claim.test is not None and claim.test.paired is True
        assert "; paired" in claim.detail
    assert second.verdict == "holds"


def test_paired_mean_is_scipys_paired_t_test() -> None:
    rng = np.random.default_rng(3)
    standard = rng.normal(0.10, 0.15, 500)
    robust = standard + rng.normal(0.02, 0.2, 500)
    found = paired_mean(list(robust), list(standard), "robust above standard")
    reference = scipy_stats.ttest_rel(robust, standard, alternative="greater")
    assert found.p_holds == pytest.approx(reference.pvalue, rel=1e-6)
    interval = scipy_stats.ttest_rel(robust, standard).confidence_interval(0.95)
    assert (found.ci_low, found.ci_high) == pytest.approx((interval.low, interval.high))
    assert found.paired is True and found.n == 500 and "paired t test over 500 images" in found.name


def per_image_claim(shift: float, n: int) -> Claim:
    rng = np.random.default_rng(4)
    standard, robust = ModelLabel("standard", None, 0.0), ModelLabel("l2", "l2", 1.5)
    base = rng.normal(0.2, 0.1, n)
    series = {(standard, (None, None)): list(base),
              (robust, (None, None)): list(base + shift + rng.normal(0, 0.05, n))}
    values = [Measured(model, attack, float(np.mean(v)), 1)
              for (model, attack), v in series.items()]
    (claim,) = settle_claims([robust_higher_claim("Figures 5, 8", "aligns more", "alignment",
                                                  "run it", values, series)])
    return claim


def test_a_per_image_measure_is_judged_paired_over_images() -> None:
    """The robust model's gradients align 0.02 better on every image (noise 0.05): paired over
    2,000 images that holds; over 5 it is unresolved; without per-image values the claim is
    compared by value and says so."""
    claim = per_image_claim(0.02, 2_000)
    assert claim.verdict == "holds" and claim.test is not None and claim.test.paired is True
    assert "over the images both measured, at least 2,000" in claim.detail
    assert "l2 above standard: +0.0" in claim.detail
    assert "estimate +0.0" in claim.detail  # a correlation, not a percentage
    assert per_image_claim(0.02, 5).verdict == "unresolved"
    assert per_image_claim(-0.05, 2_000).verdict == "does not hold"
    standard, robust = ModelLabel("standard", None, 0.0), ModelLabel("l2", "l2", 1.5)
    means = [Measured(standard, (None, None), 0.2, 1), Measured(robust, (None, None), 0.3, 1)]
    (by_means,) = settle_claims([robust_higher_claim("Figures 5, 8", "aligns more",
                                                     "alignment", "run it", means)])
    assert by_means.verdict == "holds" and "not a paired test" in by_means.detail


def test_images_a_model_did_not_measure_are_left_out_of_the_pairs() -> None:
    """E4's agreement is undefined (NaN) where the attacked model missed the target: a robust
    model that resists the attack on most images is compared on the images both reached."""
    standard, robust = ModelLabel("standard", None, 0.0), ModelLabel("linf", "linf", 0.3)
    n = 400
    agree_standard = [float(i % 4 == 0) for i in range(n)]  # 25% where reached (all)
    agree_robust = [float(i % 4 != 3) if i % 10 == 0 else math.nan for i in range(n)]
    attack = ("linf", 0.3)
    series = {(standard, attack): agree_standard, (robust, attack): agree_robust}
    values = [Measured(standard, attack, 0.25, 1), Measured(robust, attack, 0.75, 1)]
    (claim,) = settle_claims([robust_higher_claim("Figures 3, 6, 7", "target", "agreement",
                                                  "run it", values, series)])
    assert claim.test is not None and claim.test.n == 40  # the images both reached
    assert claim.verdict == "holds"
    assert both_measured(agree_standard, agree_robust[:-1]) == []  # not the same images
