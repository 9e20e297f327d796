"""Numbers with their uncertainty: intervals and exact tests for accuracies.

Pure: counts in, floats out; no SQL, no torch. The exact tests and the score intervals are
written out here with ``math`` (``lgamma`` sums, the closed-form Wilson limits) rather than
called from ``scipy.stats``, whose import alone takes most of a second: ``robustlab results``
and ``robustlab compare`` pay for every module they import. ``tests/analysis/test_stats.py``
checks each against scipy (``binomtest``, ``fisher_exact``, ``t``). Only ``mean_interval``
imports scipy (the t quantile), and only when called.

- ``wilson_interval``: the Wilson score interval of k successes in n (Wilson 1927), the
  interval ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` gives.
- ``paired_difference``: two classifiers on the same examples. The difference of their
  accuracies with Newcombe's score interval for paired proportions (Newcombe 1998,
  "Improved confidence intervals for the difference between binomial proportions based on
  paired data", Statistics in Medicine 17:2635, method 10) and the exact McNemar p-value (a
  two-sided binomial test of the discordant pairs at 1/2).
- ``unpaired_difference``: two accuracies on different (or unknown) examples. Newcombe's
  hybrid score interval (Newcombe 1998, "Interval estimation for the difference between
  independent proportions", Statistics in Medicine 17:873, method 10) and Fisher's exact p.
- ``holm``: Holm's step-down adjustment of a family of p-values (Holm 1979).
- ``mean_interval``: mean, standard deviation and t interval of a measure over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

CONFIDENCE = 0.95
"""The level of every interval unless a caller asks for another."""

TIE_TOLERANCE = 1e-7
"""Relative slack when an exact test collects the outcomes "as extreme as" the observed one:
outcomes whose probability ties the observed one's up to rounding count (R uses 1 + 1e-7)."""


@lru_cache(maxsize=8)  # every row of a 10,000-row listing asks for the same one
def normal_quantile(confidence: float = CONFIDENCE) -> float:
    """z such that a standard normal lies in [-z, z] with probability ``confidence``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """t such that Student's t with ``df`` degrees of freedom lies in [-t, t] with probability
    ``confidence`` (scipy, imported only when a caller has repeats)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + confidence / 2))


def upper_tail(z: float, df: float | None = None) -> float:
    """P(Z >= z): standard normal, or Student's t with ``df`` degrees of freedom."""
    if df is None:
        return 1 - NormalDist().cdf(z)
    from scipy.special import stdtr

    return float(stdtr(df, -z))


# --------------------------------------------------------------------------- one proportion


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of the proportion k/n; (0, upper) at k=0, (lower, 1) at k=n.

    Args:
        k: successes (correctly classified examples), 0 <= k <= n.
        n: trials (examples evaluated), n >= 1.
        confidence: the interval's level. (Default: 0.95)
    """
    _check_count(k, n)
    if n == 0:
        raise ValueError("an interval needs at least one example (n = 0)")
    z = normal_quantile(confidence)
    z2 = z * z
    p = k / n
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # the closed form's rounding must not move an end past the estimate or out of [0, 1]
    low = 0.0 if k == 0 else min(max(centre - half, 0.0), p)
    high = 1.0 if k == n else max(min(centre + half, 1.0), p)
    return low, high


def accuracy_interval(accuracy: float | None, n: int | None,
                      confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The Wilson interval of a stored accuracy measured on n examples.

    The number correct is ``round(accuracy * n)`` (an accuracy is a count over n, stored as a
    fraction). ``(None, None)`` when there is nothing to bound: no accuracy, NaN, or n 0.
    """
    if accuracy is None or n is None or n <= 0 or math.isnan(accuracy):
        return None, None
    k = min(max(round(accuracy * n), 0), n)
    return wilson_interval(k, int(n), confidence)


def interval_columns(accuracy: float | None, n: int | None) -> dict[str, float | None]:
    """The derived result columns of one row (``contract.columns.DERIVED_COLUMNS``):
    ``ci_low`` and ``ci_high``, the 95% Wilson interval of its accuracy over its n."""
    low, high = accuracy_interval(accuracy, n)
    return {"ci_low": low, "ci_high": high}


# --------------------------------------------------------------------------- two proportions


@dataclass(frozen=True)
class Difference:
    """Accuracy of a minus accuracy of b, its interval and the p-value of "no difference"."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float


def binomial_half_p(k: int, m: int) -> float:
    """The exact two-sided p-value of k successes in m trials at probability 1/2.

    ``scipy.stats.binomtest(k, m, 0.5).pvalue``: the probability of every outcome no more
    likely than k's, which for the symmetric Bin(m, 1/2) is twice the smaller tail (1 at the
    centre, and 1 when m is 0). The tail is summed from its largest term down, each term the
    previous times i / (m - i + 1): linear in the tail's length, no underflow at large m.
    """
    _check_count(k, m)
    low = min(k, m - k)
    if 2 * low >= m - 1:  # the centre (m even) or one of its two tied neighbours (m odd)
        return 1.0
    term = math.exp(_log_choose(m, low) - m * math.log(2))  # P(X = low)
    terms = [term]
    for i in range(low, 0, -1):  # P(X = i - 1) = P(X = i) * i / (m - i + 1)
        term *= i / (m - i + 1)
        terms.append(term)
    return min(1.0, 2 * math.fsum(terms))


def binomial_half_upper(k: int, m: int) -> float:
    """P(X >= k) for X ~ Bin(m, 1/2): the exact one-sided McNemar p-value of k of the m
    discordant examples favouring one side (``scipy.stats.binom.sf(k - 1, m, 0.5)``)."""
    _check_count(k, m)
    if k == 0:
        return 1.0
    return min(1.0, math.fsum(math.exp(_log_choose(m, i) - m * math.log(2))
                              for i in range(k, m + 1)))


def mcnemar_p(a_only: int, b_only: int) -> float:
    """The exact McNemar p-value: a two-sided binomial test of min(a_only, b_only) among the
    a_only + b_only discordant pairs at 1/2; 1.0 when there are none."""
    return binomial_half_p(min(a_only, b_only), a_only + b_only)


def paired_difference(both: int, a_only: int, b_only: int, neither: int,
                      confidence: float = CONFIDENCE) -> Difference:
    """Two classifiers on the same n examples: the difference of their accuracies.

    The interval is Newcombe's method 10 for paired proportions (Newcombe 1998, Statistics in
    Medicine 17:2635): the Wilson intervals of the two accuracies combined with the estimated
    correlation phi of the paired outcomes (phi taken as 0 when a margin is empty, and its
    numerator ad - bc reduced by n/2 towards 0 when positive, as the paper prescribes). The
    p-value is the exact McNemar test (``mcnemar_p``).

    Args:
        both: examples both classify correctly.
        a_only: examples a gets right and b wrong.
        b_only: examples b gets right and a wrong.
        neither: examples both get wrong.
    """
    counts = (both, a_only, b_only, neither)
    if min(counts) < 0:
        raise ValueError(f"counts must be non-negative, not {counts}")
    n = sum(counts)
    if n == 0:
        raise ValueError("a paired difference needs at least one example")
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson_interval(both + a_only, n, confidence)
    l2, u2 = wilson_interval(both + b_only, n, confidence)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    phi = 0.0
    if margins > 0:
        cross = both * neither - a_only * b_only
        numerator = max(cross - n / 2, 0.0) if cross > 0 else float(cross)
        phi = numerator / math.sqrt(margins)
    difference = (a_only - b_only) / n
    lower = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2,
                          0.0))
    upper = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2,
                          0.0))
    return Difference(difference, max(difference - lower, -1.0), min(difference + upper, 1.0),
                      mcnemar_p(a_only, b_only))


def unpaired_difference(k_a: int, n_a: int, k_b: int, n_b: int,
                        confidence: float = CONFIDENCE) -> Difference:
    """Two accuracies on different (or not known to be the same) examples: k_a/n_a - k_b/n_b.

    The interval is Newcombe's hybrid score interval (Newcombe 1998, Statistics in Medicine
    17:873, method 10): each end combines the two Wilson intervals' distances from their
    estimates. The p-value is Fisher's exact test of the 2x2 table (``fisher_exact_p``).
    """
    l1, u1 = wilson_interval(k_a, n_a, confidence)
    l2, u2 = wilson_interval(k_b, n_b, confidence)
    p1, p2 = k_a / n_a, k_b / n_b
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Difference(difference, max(low, -1.0), min(high, 1.0),
                      fisher_exact_p(k_a, n_a - k_a, k_b, n_b - k_b))


def fisher_exact_p(a: int, b: int, c: int, d: int) -> float:
    """Fisher's exact two-sided p-value of the table [[a, b], [c, d]].

    ``scipy.stats.fisher_exact([[a, b], [c, d]]).pvalue``: the hypergeometric probability
    (margins fixed) of every table no more likely than the observed one. Each table's weight
    relative to the most likely one comes from the ratio of neighbouring tables, so a
    10,000-example table costs a few milliseconds and no ``lgamma`` per table.
    """
    if min(a, b, c, d) < 0:
        raise ValueError(f"a table's counts are non-negative, not {(a, b, c, d)}")
    row, col, total = a + b, a + c, a + b + c + d
    first, last = max(0, col - (c + d)), min(row, col)
    if first == last:
        return 1.0
    mode = min(max((row + 1) * (col + 1) // (total + 2), first), last)
    weights = {mode: 1.0}  # P(x) / P(mode) for the top-left cell x
    weight = 1.0
    for x in range(mode, last):  # P(x + 1) / P(x)
        weight *= (row - x) * (col - x) / ((x + 1) * (total - row - col + x + 1))
        weights[x + 1] = weight
    weight = 1.0
    for x in range(mode, first, -1):  # P(x - 1) / P(x)
        weight *= x * (total - row - col + x) / ((row - x + 1) * (col - x + 1))
        weights[x - 1] = weight
    limit = weights[a] * (1 + TIE_TOLERANCE)
    extreme = math.fsum(w for w in weights.values() if w <= limit)
    return min(1.0, extreme / math.fsum(weights.values()))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _check_count(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, not k={k}, n={n}")


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Holm:
    """Holm's step-down over a family: adjusted p-values (in the input's order) and which
    hypotheses are rejected at ``alpha`` (family-wise error rate at most alpha)."""

    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]
    alpha: float


def holm(p_values: Sequence[float], alpha: float = 0.05) -> Holm:
    """Holm (1979): the i-th smallest of m p-values is multiplied by m - i + 1 (i from 1),
    made monotone (each at least its predecessor's) and capped at 1; a hypothesis is rejected
    when its adjusted p-value is at most alpha. Equivalent to stepping down until the first
    p_(i) > alpha / (m - i + 1)."""
    if any(not 0 <= p <= 1 for p in p_values):
        raise ValueError(f"p-values lie in [0, 1]: {list(p_values)}")
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return Holm(tuple(adjusted), tuple(p <= alpha for p in adjusted), alpha)


# --------------------------------------------------------------------------- over seeds


@dataclass(frozen=True)
class MeanInterval:
    """A measure over seeds: its mean, sample standard deviation (ddof 1) and the t interval
    of the mean; std and the interval are NaN with a single value."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanInterval:
    """Mean ± t(confidence, n-1) · s / sqrt(n): the seeds are the sample (Bouthillier et al.,
    MLSys 2021: seed variance is as large as test-set variance)."""
    n = len(values)
    if n == 0:
        raise ValueError("a mean needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return MeanInterval(mean, math.nan, 1, math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1, confidence) * std / math.sqrt(n)
    return MeanInterval(mean, std, n, mean - half, mean + half)
