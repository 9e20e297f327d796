"""The statistics behind "conclusions that carry their uncertainty", each against scipy.

``service.analysis.stats`` writes its tests and intervals out with ``math`` (the CLI must not
import scipy); these tests hold every one to scipy's (``binomtest``, ``fisher_exact``, ``t``)
on fixed and random inputs, and the two Newcombe intervals to the worked examples of the
papers that define them.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats as scipy_stats

from contract.columns import DERIVED_COLUMNS
from service.analysis import stats

Z = 1.959963984540054
"""The 97.5% point of the standard normal."""

RNG = random.Random(20240601)
COUNTS = [(k, n) for n in (1, 2, 7, 50, 263, 10_000) for k in sorted({0, n, n // 3, n - 1})]


# --------------------------------------------------------------------------- Wilson


def test_wilson_by_hand() -> None:
    """81 of 263: Wilson's formula written out, and Newcombe's (1998) published 0.2553-0.3662."""
    k, n = 81, 263
    p = k / n
    centre = (2 * k + Z**2) / (2 * (n + Z**2))
    half = Z * math.sqrt(Z**2 + 4 * k * (1 - p)) / (2 * (n + Z**2))
    low, high = stats.wilson_interval(k, n)
    assert (low, high) == (pytest.approx(centre - half, rel=1e-12),
                           pytest.approx(centre + half, rel=1e-12))
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(("k", "n"), COUNTS)
def test_wilson_matches_scipy(k: int, n: int) -> None:
    expected = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson_interval(k, n)
    assert low == pytest.approx(expected.low, rel=1e-9, abs=1e-12)
    assert high == pytest.approx(expected.high, rel=1e-9, abs=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_ends_at_zero_and_n() -> None:
    assert stats.wilson_interval(0, 40)[0] == 0.0 and stats.wilson_interval(0, 40)[1] > 0
    assert stats.wilson_interval(40, 40)[1] == 1.0 and stats.wilson_interval(40, 40)[0] < 1
    other = scipy_stats.binomtest(7, 40).proportion_ci(confidence_level=0.99, method="wilson")
    assert stats.wilson_interval(7, 40, 0.99) == (pytest.approx(other.low),
                                                  pytest.approx(other.high))
    for bad in ((-1, 5), (6, 5), (0, 0)):
        with pytest.raises(ValueError):
            stats.wilson_interval(*bad)


def test_accuracy_interval_reads_the_count_off_the_fraction() -> None:
    assert stats.accuracy_interval(0.4, 200) == stats.wilson_interval(80, 200)
    assert stats.accuracy_interval(0.4 + 1e-12, 200) == stats.wilson_interval(80, 200)
    assert stats.accuracy_interval(None, 200) == (None, None)
    assert stats.accuracy_interval(float("nan"), 200) == (None, None)
    assert stats.accuracy_interval(0.5, 0) == (None, None)


def test_interval_columns_are_the_contracts_derived_columns() -> None:
    """The contract declares the derived columns; this is the one function that fills them."""
    values = stats.interval_columns(0.25, 100)
    assert list(values) == [column.name for column in DERIVED_COLUMNS]
    assert (values["ci_low"], values["ci_high"]) == stats.wilson_interval(25, 100)


# --------------------------------------------------------------------------- exact tests


@pytest.mark.parametrize(("a_only", "b_only"),
                         [(0, 1), (1, 0), (3, 3), (3, 4), (12, 2), (0, 25), (40, 61),
                          (500, 430), (4_900, 5_100), (2, 9_000)])
def test_mcnemar_is_scipys_binomial_test(a_only: int, b_only: int) -> None:
    expected = scipy_stats.binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
    assert stats.mcnemar_p(a_only, b_only) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_without_discordant_pairs_is_one() -> None:
    assert stats.mcnemar_p(0, 0) == 1.0


def test_binomial_matches_scipy_on_random_counts() -> None:
    for _ in range(300):
        m = RNG.choice([1, 2, 3, 8, 31, 200, 1_001, 20_000])
        spread = 3 * int(math.sqrt(m)) + 1
        k = min(max(m // 2 + RNG.randint(-spread, spread), 0), m)
        expected = scipy_stats.binomtest(k, m, 0.5).pvalue
        assert stats.binomial_half_p(k, m) == pytest.approx(expected, rel=1e-9), (k, m)


@pytest.mark.parametrize("table", [(0, 5, 0, 5), (5, 0, 0, 5), (3, 1, 1, 3), (2, 8, 8, 2),
                                   (56, 14, 48, 32), (9, 1, 3, 7), (0, 10, 1, 9),
                                   (9_500, 500, 9_420, 580), (1, 0, 0, 0)])
def test_fisher_is_scipys(table: tuple[int, int, int, int]) -> None:
    a, b, c, d = table
    expected = scipy_stats.fisher_exact([[a, b], [c, d]]).pvalue
    assert stats.fisher_exact_p(a, b, c, d) == pytest.approx(expected, rel=1e-9)


def test_fisher_matches_scipy_on_random_tables() -> None:
    for _ in range(300):
        n1, n2 = RNG.choice([3, 20, 150, 2_000]), RNG.choice([4, 20, 150, 2_000])
        a = RNG.randint(0, n1)
        c = min(max(round(a / n1 * n2) + RNG.randint(-8, 8), 0), n2)
        expected = scipy_stats.fisher_exact([[a, n1 - a], [c, n2 - c]]).pvalue
        assert stats.fisher_exact_p(a, n1 - a, c, n2 - c) == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------- differences


@pytest.mark.parametrize(("table", "low", "high"), [
    ((36, 12, 2, 0), 0.0569, 0.3404), ((18, 12, 2, 18), 0.0562, 0.3290),
    ((53, 0, 0, 1), -0.0729, 0.0729), ((0, 30, 0, 0), 0.8395, 1.0),
])
def test_paired_interval_reproduces_newcombes_examples(
        table: tuple[int, int, int, int], low: float, high: float) -> None:
    """Newcombe (1998), paired data, method 10 (his Table II examples)."""
    found = stats.paired_difference(*table)
    assert (round(found.ci_low, 4), round(found.ci_high, 4)) == (low, high)


@pytest.mark.parametrize(("counts", "low", "high"), [
    ((56, 70, 48, 80), 0.0524, 0.3339), ((9, 10, 3, 10), 0.1705, 0.8090),
    ((6, 7, 2, 7), 0.0582, 0.8062), ((5, 56, 0, 29), -0.0381, 0.1926),
])
def test_unpaired_interval_reproduces_newcombes_examples(
        counts: tuple[int, int, int, int], low: float, high: float) -> None:
    """Newcombe (1998), independent proportions, method 10 (his Table II examples)."""
    found = stats.unpaired_difference(*counts)
    assert (round(found.ci_low, 4), round(found.ci_high, 4)) == (low, high)
    k_a, n_a, k_b, n_b = counts
    assert found.difference == pytest.approx(k_a / n_a - k_b / n_b)
    assert found.p_value == pytest.approx(
        scipy_stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue, rel=1e-9)


def test_paired_difference_counts_and_tests_the_discordant_pairs() -> None:
    for _ in range(200):
        both, a_only, b_only, neither = (RNG.randint(0, 300) for _ in range(4))
        if both + a_only + b_only + neither == 0:
            continue
        found = stats.paired_difference(both, a_only, b_only, neither)
        n = both + a_only + b_only + neither
        assert a_only - b_only == pytest.approx(n * found.difference)
        assert -1 <= found.ci_low <= found.difference <= found.ci_high <= 1
        assert found.p_value == pytest.approx(
            scipy_stats.binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
            if a_only + b_only else 1.0, rel=1e-9)


def test_paired_is_narrower_than_unpaired_when_outcomes_agree() -> None:
    """The point of pairing: two similar models on the same examples differ in few of them."""
    paired = stats.paired_difference(800, 30, 10, 160)
    unpaired = stats.unpaired_difference(830, 1000, 810, 1000)
    assert paired.difference == pytest.approx(unpaired.difference)
    assert paired.ci_high - paired.ci_low < unpaired.ci_high - unpaired.ci_low
    assert paired.p_value < 0.05 < unpaired.p_value


# --------------------------------------------------------------------------- Holm


def test_holm_on_a_hand_made_family() -> None:
    """Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> 0.06 (monotone)."""
    found = stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert found.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert found.rejected == (True, False, False, True)
    assert stats.holm([0.5, 0.9], alpha=0.05).adjusted == (1.0, 1.0)  # capped at 1
    assert stats.holm([]).adjusted == ()


def test_holm_rejects_what_the_step_down_rejects() -> None:
    """The adjusted p-values reject exactly what Holm's sequential procedure rejects."""
    for _ in range(200):
        family = [RNG.random() ** 3 for _ in range(RNG.randint(1, 12))]
        alpha = RNG.choice([0.01, 0.05, 0.1])
        rejected = set()
        for rank, index in enumerate(sorted(range(len(family)), key=family.__getitem__)):
            if family[index] > alpha / (len(family) - rank):
                break
            rejected.add(index)
        found = stats.holm(family, alpha)
        assert {i for i, r in enumerate(found.rejected) if r} == rejected


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("values", [[0.81, 0.84, 0.79], [0.5, 0.52], [0.9, 0.91, 0.93, 0.88, 0.9]])
def test_mean_interval_is_scipys_t_interval(values: list[float]) -> None:
    found = stats.mean_interval(values)
    mean, sem = np.mean(values), scipy_stats.sem(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    assert found.mean == pytest.approx(mean) and found.std == pytest.approx(np.std(values, ddof=1))
    assert (found.ci_low, found.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_mean_interval_of_one_seed_has_no_interval() -> None:
    found = stats.mean_interval([0.7])
    assert found.mean == 0.7 and math.isnan(found.std) and math.isnan(found.ci_low)


def test_one_sided_binomial_tail_matches_scipy() -> None:
    """The exact one-sided McNemar p-value the paired claims use: P(X >= k), X ~ Bin(m, 1/2)."""
    for _ in range(200):
        m = RNG.choice([0, 1, 2, 7, 40, 387, 2_000])
        k = RNG.randint(0, m)
        expected = scipy_stats.binom.sf(k - 1, m, 0.5)
        assert stats.binomial_half_upper(k, m) == pytest.approx(expected, rel=1e-9, abs=1e-300)
