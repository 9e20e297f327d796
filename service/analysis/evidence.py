"""The evidence behind a claim: which test, its numbers, and the verdict over a family.

A claim of the report is judged by one explicit test (``Test``), built here from measured
accuracies (``Measure``: a value, its examples, and its seeds when the cell was repeated):

- an inequality between two accuracies (``difference``): one-sided; paired when both were
  measured once on the same examples with per-example outcomes stored (the exact McNemar test,
  or a z test of the paired difference against a non-zero gap, with Newcombe's paired
  interval); else a z test on the two binomial accuracies with Newcombe's hybrid score
  interval, or Welch's t test over the seeds when both cells have two or more;
- a value against a threshold (``threshold``): one-sided score test at the threshold;
- "about p" (``about``): two one-sided tests against p ± tolerance (equivalence);
- "matches" a closed form (``matches``): holds when the closed form lies inside every 95%
  interval, does not hold when a score test rejects it;
- a bound (``bound``): one-sided, holds while no model is shown above it;
- a per-image measure of two models on the same images (``paired_mean``): the paired t test;
- a deterministic quantity (``by_value``): compared by value, and said so; not in the family.

``settle`` then decides every claim of a report together: the family is every claim with data
that has a test, and Holm's step-down (``stats.holm``) over it keeps the chance of any wrong
"holds" or "does not hold" at 5%. A claim that neither direction settles is ``unresolved``,
and says roughly how many examples (or seeds) would settle it at its observed effect.

The intervals cover sampling and seed variation, not the weakness of an attack: a robust
accuracy remains an upper bound on the true one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from service.analysis.pairing import Outcome, discordance, is_paired
from service.analysis.stats import (
    CONFIDENCE,
    binomial_half_upper,
    holm,
    mean_interval,
    normal_quantile,
    paired_difference,
    t_quantile,
    unpaired_difference,
    upper_tail,
    wilson_interval,
)

ALPHA = 0.05
"""The family-wise error rate of a report's verdicts."""

Verdict = Literal["holds", "does not hold", "unresolved", "no data"]
VERDICTS: tuple[Verdict, ...] = ("holds", "does not hold", "unresolved", "no data")
"""The verdict words (a contract: ``report --format json`` and scripts read them)."""



@dataclass(frozen=True)
class Measure:
    """An accuracy (or rate) with what its uncertainty depends on.

    ``value`` is the mean over ``seeds`` repeats (1: a single run), each on ``n`` examples;
    ``std`` the sample standard deviation over the seeds (None for one seed). Over seeds, the
    standard error is std / sqrt(seeds), floored at the binomial error of all their examples
    (three seeds that happen to agree exactly are not infinitely precise).
    """

    value: float
    n: int
    seeds: int = 1
    std: float | None = None
    outcome: Outcome | None = None
    """Its per-example outcomes and example identity, where one run measured it: two such
    measures of the same examples are compared paired."""

    @property
    def over_seeds(self) -> bool:
        return self.seeds >= 2 and self.std is not None

    def standard_error(self) -> float:
        """Over seeds: std / sqrt(seeds). Else binomial, floored so 0% and 100% have one."""
        n = max(self.n, 1) * (self.seeds if self.over_seeds else 1)
        binomial = math.sqrt(max(self.value * (1 - self.value), 1 / n) / n)
        if self.over_seeds:  # never below the sampling error of all the seeds' examples
            assert self.std is not None
            return max(self.std / math.sqrt(self.seeds), binomial)
        return binomial

    def interval(self) -> tuple[float, float]:
        """95%: the t interval over seeds, else the Wilson interval of the accuracy."""
        if self.over_seeds:
            half = t_quantile(self.seeds - 1) * self.standard_error()
            return self.value - half, self.value + half
        k = min(max(round(self.value * self.n), 0), self.n)
        return wilson_interval(k, max(self.n, 1))


@dataclass(frozen=True)
class Test:
    """One claim's test and its evidence.

    ``p_holds``: p-value of the null hypothesis "the claim is false" (rejecting it shows the
    claim); None where no test can show the claim (a match or a bound holds while it is not
    contradicted). ``p_against``: p-value of "the claim is true" (rejecting it shows the
    opposite). ``z``: the standardised effect in the claim's direction (for ``needed``).
    """

    __test__: ClassVar[bool] = False  # a statistical test, not a pytest test class

    name: str
    estimate: float
    """The difference or the value, as a fraction."""
    ci_low: float | None
    ci_high: float | None
    p_holds: float | None
    p_against: float | None
    n: int | None
    seeds: int
    paired: bool | None
    """None where the test compares no two accuracies."""
    z: float | None = None
    consistent: bool = False
    """For tests with no ``p_holds``: the claim is consistent with every interval."""
    by_value: bool = False
    """Deterministic: decided by the value itself, not in the family."""
    holds_by_value: bool = False
    p: float | None = None
    """The p-value that entered the family (two-sided where the claim can fail either way)."""
    p_holm: float | None = None
    needed: str = ""
    percent: bool = True
    """The estimate is an accuracy (shown in %); else a measure's own value (3 decimals)."""

    def text(self) -> str:
        """The evidence in one line: test, estimate, interval, p, n, seeds, pairing."""
        if self.by_value:
            return f"{self.name}: compared by value (deterministic, no sampling error)"
        shown = _points if self.percent else _raw
        parts = [self.name, f"estimate {shown(self.estimate)}"]
        if self.ci_low is not None and self.ci_high is not None:
            parts.append(f"95% CI [{shown(self.ci_low)}, {shown(self.ci_high)}]")
        if self.p is not None:
            parts.append(f"p = {_p(self.p)}" + (f" (Holm {_p(self.p_holm)})"
                                                 if self.p_holm is not None else ""))
        parts.append(f"n = {self.n:,}" if self.n is not None else "n = ?")
        parts.append(f"seeds = {self.seeds}")
        if self.paired is not None:
            parts.append("paired" if self.paired else "unpaired")
        if self.needed:
            parts.append(self.needed)
        return "; ".join(parts)


def _points(value: float) -> str:
    return f"{100 * value:.2f}%"


def _raw(value: float) -> str:
    return f"{value:+.3f}"


def _p(value: float | None) -> str:
    return "–" if value is None else (f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}")


# --------------------------------------------------------------------------- tests


def difference(a: Measure, b: Measure, gap: float = 0.0, name: str = "") -> Test:
    """"a exceeds b by more than ``gap``", one-sided.

    Paired when both were measured once on the same examples (``paired``). Else Welch's t over
    the seeds when both were repeated (the seeds' spread holds sampling and training
    variation), else a z test on the two binomial accuracies, with Newcombe's hybrid score
    interval for the difference. ``name`` says what is compared; the method is appended.
    """
    if (not a.over_seeds and not b.over_seeds and a.outcome is not None
            and b.outcome is not None and is_paired(a.outcome, b.outcome)):
        return paired(a.outcome, b.outcome, gap, name)
    estimate = a.value - b.value
    se = math.sqrt(a.standard_error() ** 2 + b.standard_error() ** 2)
    if a.over_seeds and b.over_seeds:
        va, vb = a.standard_error() ** 2, b.standard_error() ** 2
        welch = (va + vb) ** 2 / (va ** 2 / (a.seeds - 1) + vb ** 2 / (b.seeds - 1))
        df: float | None = welch
        half = t_quantile(welch) * se
        low, high = estimate - half, estimate + half
        method = "Welch t test over seeds"
    else:
        df = None
        found = unpaired_difference(_count(a), max(a.n, 1), _count(b), max(b.n, 1))
        low, high = found.ci_low, found.ci_high
        method = "z test of two accuracies, Newcombe interval"
    z = (estimate - gap) / se
    return Test(_named(name, method), estimate, low, high, upper_tail(z, df),
                upper_tail(-z, df), min(a.n, b.n), min(a.seeds, b.seeds), False, z)


def paired(a: Outcome, b: Outcome, gap: float = 0.0, name: str = "") -> Test:
    """"a exceeds b by more than ``gap``" on the same examples, one-sided, from the discordant
    examples: the exact McNemar test at gap 0 (of a_only + b_only examples, a_only favour a),
    a z test of the paired difference against a non-zero gap; Newcombe's paired interval."""
    assert a.bits is not None and b.bits is not None
    both, a_only, b_only, neither = discordance(a.bits, b.bits, a.n)
    n = a.n
    found = paired_difference(both, a_only, b_only, neither)
    estimate = found.difference
    se = math.sqrt(max(((a_only + b_only) / n - estimate ** 2) / n, 1 / n ** 2))
    z = (estimate - gap) / se
    if gap == 0:
        method = "exact McNemar test, Newcombe paired interval"
        p_holds = binomial_half_upper(a_only, a_only + b_only)
        p_against = binomial_half_upper(b_only, a_only + b_only)
    else:
        method = "z test of the paired difference, Newcombe paired interval"
        p_holds, p_against = upper_tail(z), upper_tail(-z)
    return Test(_named(name, method), estimate, found.ci_low, found.ci_high, p_holds, p_against,
                n, 1, True, z)


def paired_mean(a: Sequence[float], b: Sequence[float], name: str = "") -> Test:
    """"a's measure exceeds b's" on the same images, one-sided: the paired t test of the mean
    per-image difference a − b, with its t interval (per-image measures such as gradient
    alignment; scipy's ``ttest_rel(..., alternative="greater")``)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"a paired test needs two equal series of 2 or more, not {len(a)} "
                         f"and {len(b)}")
    found = mean_interval([x - y for x, y in zip(a, b, strict=True)])
    n = found.n
    se = found.std / math.sqrt(n)
    # se 0: every image differs by the same amount, so the sign is certain (or there is none)
    certain = math.copysign(math.inf, found.mean) if found.mean else 0.0
    z = found.mean / se if se > 0 else certain
    df = float(n - 1)
    method = f"paired t test over {n:,} images"
    return Test(_named(name, method), found.mean, found.ci_low if se > 0 else found.mean,
                found.ci_high if se > 0 else found.mean, upper_tail(z, df), upper_tail(-z, df),
                n, 1, True, z, percent=False)


def _named(name: str, method: str) -> str:
    return f"{name} ({method})" if name else f"one-sided {method}"


def threshold(m: Measure, value: float, above: bool, name: str = "") -> Test:
    """"m lies above (or below) ``value``", one-sided: a score test with the standard error
    at the threshold (binomial), or a t test over the seeds."""
    low, high = m.interval()
    sign = 1 if above else -1
    if m.over_seeds:
        se, df = m.standard_error(), float(m.seeds - 1)
    else:
        se, df = math.sqrt(max(value * (1 - value), 1 / max(m.n, 1)) / max(m.n, 1)), None
    z = sign * (m.value - value) / se
    return Test(name or f"one-sided score test against {_points(value)}", m.value, low, high,
                upper_tail(z, df), upper_tail(-z, df), m.n, m.seeds, None, z)


def about(m: Measure, value: float, tolerance: float) -> Test:
    """"m is about ``value``": equivalence by two one-sided tests against value ± tolerance;
    shown not to be when m lies beyond a tolerance bound significantly."""
    low, high = m.interval()
    above = threshold(m, value - tolerance, above=True)
    below = threshold(m, value + tolerance, above=False)
    p_holds = max(p_or_one(above.p_holds), p_or_one(below.p_holds))
    p_against = min(1.0, 2 * min(p_or_one(above.p_against), p_or_one(below.p_against)))
    z = min(_zero(above.z), _zero(below.z))
    return Test(f"equivalence (two one-sided tests) within ±{100 * tolerance:g} points of "
                f"{_points(value)}", m.value, low, high, p_holds, p_against, m.n, m.seeds,
                None, z)


def matches(m: Measure, value: float) -> Test:
    """"m matches ``value``" (a closed form): consistent while ``value`` lies inside the 95%
    interval; contradicted when a two-sided score test rejects it."""
    low, high = m.interval()
    test = threshold(m, value, above=True)
    p_against = min(1.0, 2 * min(p_or_one(test.p_holds), p_or_one(test.p_against)))
    return Test(f"two-sided score test against the closed form {_points(value)}", m.value,
                low, high, None, p_against, m.n, m.seeds, None, None,
                consistent=low <= value <= high)


def bound(m: Measure, limit: float, limit_se: float, name: str = "") -> Test:
    """"m is at most ``limit``" (whose standard error is ``limit_se``), one-sided: shown not
    to hold when m lies significantly above it. The two errors add rather than in quadrature:
    both come from the same examples, and are often perfectly correlated."""
    estimate = m.value - limit
    se = m.standard_error() + limit_se
    z = estimate / se
    p_above = upper_tail(z)
    half = normal_quantile(CONFIDENCE) * se
    return Test(name or "one-sided z test of the bound (errors added)", estimate,
                estimate - half, estimate + half, None, p_above, m.n, m.seeds, None, None,
                consistent=p_above >= ALPHA)


def by_value(holds: bool, estimate: float, name: str) -> Test:
    """A deterministic quantity (a model's ‖w‖₁): decided by its value; no sampling error."""
    return Test(name, estimate, None, None, None, None, None, 1, None, by_value=True,
                holds_by_value=holds)


def every(tests: Sequence[Test], name: str) -> Test:
    """All of ``tests`` must hold (an intersection-union test: p_holds is the largest), and
    any one failing shows the claim false (Bonferroni over them: p_against). The estimate and
    interval shown are the deciding member's: the least favourable to the claim."""
    p_holds = (max(p_or_one(t.p_holds) for t in tests)
               if all(t.p_holds is not None for t in tests) else None)
    p_against = min(1.0, len(tests) * min(p_or_one(t.p_against) for t in tests))
    if p_holds is not None:
        decider = max(tests, key=lambda t: p_or_one(t.p_holds))
    else:
        decider = min(tests, key=lambda t: p_or_one(t.p_against))
    return Test(name, decider.estimate, decider.ci_low, decider.ci_high, p_holds, p_against,
                min((t.n for t in tests if t.n is not None), default=None),
                min(t.seeds for t in tests), _paired(tests),
                min((t.z for t in tests if t.z is not None), default=None),
                consistent=all(t.consistent for t in tests), percent=decider.percent)


def p_or_one(p: float | None) -> float:
    """A p-value, 1 where there is none (``p or 1.0`` would turn a p of 0 into 1)."""
    return 1.0 if p is None else p


def _zero(z: float | None) -> float:
    return 0.0 if z is None else z


def _paired(tests: Sequence[Test]) -> bool | None:
    flags = {t.paired for t in tests if t.paired is not None}
    return None if not flags else all(flags)


def _count(m: Measure) -> int:
    return min(max(round(m.value * m.n), 0), max(m.n, 1))


# --------------------------------------------------------------------------- the family


def family_p(test: Test) -> float | None:
    """The p-value a test brings to the family: two-sided (twice the smaller one-sided p)
    where the claim can be shown either way, else its one direction's."""
    if test.by_value:
        return None
    if test.p_holds is None:
        return test.p_against
    return min(1.0, 2 * min(test.p_holds, test.p_against if test.p_against is not None
                            else 1.0))


def settle(tests: Sequence[Test | None], alpha: float = ALPHA) -> list[tuple[Verdict, Test | None]]:
    """Verdicts for a family of claims' tests (None: the claim has no data), Holm-adjusted.

    The family is every test that brings a p-value (``family_p``); m is its size. A claim
    holds when its p is rejected in the claim's direction, does not hold when rejected in the
    opposite one; a match or a bound with no rejection holds when consistent with its
    intervals; the rest are unresolved, with what would settle them.
    """
    p_values = {i: family_p(test) for i, test in enumerate(tests) if test is not None}
    members = [i for i, p in p_values.items() if p is not None]
    found = holm([p_or_one(p_values[i]) for i in members], alpha) if members else None
    adjusted = dict(zip(members, found.adjusted, strict=True)) if found else {}
    m = max(len(members), 1)
    out: list[tuple[Verdict, Test | None]] = []
    for index, test in enumerate(tests):
        if test is None:
            out.append(("no data", None))
            continue
        if test.by_value:
            out.append(("holds" if test.holds_by_value else "does not hold", test))
            continue
        p_holm = adjusted[index]
        test = replace(test, p=family_p(test), p_holm=p_holm)
        rejected = p_holm <= alpha
        if rejected and test.p_holds is not None and test.p_holds <= (p_or_one(test.p_against)):
            out.append(("holds", test))
        elif rejected:
            out.append(("does not hold", test))
        elif test.p_holds is None and test.consistent:
            out.append(("holds", test))
        else:
            out.append(("unresolved", replace(test, needed=needed(test, alpha / m))))
    return out


def needed(test: Test, level: float) -> str:
    """Roughly how many examples (or seeds) would settle the test at its observed effect:
    the standard error shrinks as 1/sqrt(size), so size × (z needed / z seen)²."""
    z_needed = normal_quantile(1 - level)
    seen = test.z
    if seen is None or seen <= 0:
        return "the estimate points away from the claim: more data would more likely settle " \
               "it as 'does not hold'"
    factor = (z_needed / seen) ** 2
    if test.seeds >= 2:
        return f"about {math.ceil(test.seeds * factor)} seeds would settle it"
    if test.n is None:
        return ""
    return f"about {_round(test.n * factor)} examples would settle it"


def _round(value: float) -> str:
    if value < 100:
        return f"{math.ceil(value)}"
    digits = 10 ** (len(str(int(value))) - 2)
    return f"{math.ceil(value / digits) * digits:,}"
