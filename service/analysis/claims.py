"""Claim verdicts: each claim of the paper that robustlab reproduces, judged on our numbers.

A claim ``holds``, ``does not hold``, is ``unresolved`` or has ``no data`` (the words are a
contract), with the numbers that decide it, the test that judged it and its evidence (the
difference or value, its 95% interval, p, n, seeds, paired or not: ``evidence.Test``), and the
scale of its evidence (training examples, epochs, test examples). Below the paper's scale a
verdict reads "holds (reduced scale)". Each function here judges its claim alone (a family of
one); ``settle_claims`` judges a report's claims together, Holm-adjusted over the family of
every claim with data (``service.analysis.evidence``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from service.analysis.evidence import (
    ALPHA,
    Measure,
    Test,
    Verdict,
    about,
    bound,
    by_value,
    difference,
    every,
    matches,
    p_or_one,
    paired_mean,
    settle,
    threshold,
)
from service.analysis.figure1 import CurveKey, Figure1Point, FrontierKey
from service.analysis.gallery import (
    Attack,
    Measured,
    ModelLabel,
    attack_order,
    attack_text,
    model_order,
)
from service.analysis.paper import MIN_EPOCHS, TABLE2_EPS, TABLE4_ADVERSARIAL_GAP, Scale
from service.analysis.table4 import Table4Row, TopKPoint
from service.analysis.theory import TheoryRun, theorem_2_1_applies

VERDICT_LABELS: dict[Verdict, str] = {
    "holds": "✅ holds", "does not hold": "❌ does not hold", "unresolved": "❔ unresolved",
    "no data": "➖ no data",
}
REDUCED = " (reduced scale)"
ABOUT_TOLERANCE = 0.03
"""How near p "about p" must be: the equivalence margin of E1's adversarially trained SVM
(3 points; the paper's Figure shows the accuracies at p to within the plot's resolution)."""
__all__ = ["ABOUT_TOLERANCE", "Claim", "Verdict", "VERDICT_LABELS", "settle_claims"]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, judged on our numbers."""

    section: str
    text: str
    verdict: Verdict
    evidence: str
    """The numbers that decide it, or what is missing."""
    scale: Scale | None = None
    """The scale of the evidence (``None``: not a matter of scale, or no data)."""
    paper_scale: Scale | None = None
    """The paper's scale for the same experiment, where it has one."""
    test: Test | None = None
    """The test that judged it and its evidence; None with no data."""

    @property
    def reduced(self) -> bool:
        """Judged on less than the paper's data or training."""
        return (self.verdict != "no data" and self.scale is not None
                and self.paper_scale is not None and self.scale.below(self.paper_scale))

    @property
    def detail(self) -> str:
        """The numbers, then the test's evidence (what the report prints)."""
        return self.evidence if self.test is None else f"{self.evidence}; {self.test.text()}"

    @property
    def label(self) -> str:
        return VERDICT_LABELS[self.verdict] + (REDUCED if self.reduced else "")

    def scale_text(self) -> str:
        return "–" if self.scale is None else self.scale.text()


def judge(section: str, text: str, test: Test, evidence: str, scale: Scale | None = None,
          paper_scale: Scale | None = None) -> Claim:
    """The claim judged by ``test`` alone (a family of one; ``settle_claims`` re-judges it
    with the report's family)."""
    ((verdict, settled),) = settle([test])
    return Claim(section, text, verdict, evidence, scale, paper_scale, settled or test)


def no_data(section: str, text: str, reason: str) -> Claim:
    return Claim(section, text, "no data", reason)


def settle_claims(claims: Sequence[Claim], alpha: float = ALPHA) -> list[Claim]:
    """The claims re-judged together: Holm's step-down over every claim with a test."""
    found = settle([claim.test for claim in claims], alpha)
    return [claim if claim.test is None else replace(claim, verdict=verdict, test=test)
            for claim, (verdict, test) in zip(claims, found, strict=True)]


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


# --------------------------------------------------------------------------- E1: theory


E1_CLAIMS = (
    "f_avg's accuracy matches its closed form Φ((η − ε)√d)",
    "the standard SVM has > 99% standard and < 1% adversarial accuracy at ε ≥ 2η",
    "the adversarially trained SVM has about p standard and adversarial accuracy",
    "every model is within Theorem 2.1's bound adv ≤ p/(1−p)·(1 − std) at ε ≥ 2η",
)


def theory_claims(item: TheoryRun, section: str) -> list[Claim]:
    """The four E1 claims; their scale is the run's sample sizes (the paper's is the
    population, so there is no "reduced scale" to speak of)."""
    spec = item.run.resolved_spec
    n_train, epochs = spec.get("n_train"), spec.get("epochs")
    scale = Scale(int(n_train) if n_train is not None else None,
                  float(epochs) if epochs is not None else None,
                  min((p.n for p in item.points), default=None))
    return [replace(c, scale=scale if c.verdict != "no data" else None)
            for c in (averaging_claim(item, section), standard_svm_claim(item, section),
                      adversarial_svm_claim(item, section), bound_claim(item, section))]


def averaging_claim(item: TheoryRun, section: str) -> Claim:
    """Matches: the closed form inside every point's 95% interval; contradicted when a
    two-sided score test rejects it at some point (Bonferroni over the points)."""
    pairs = [(p, p.closed_form) for p in item.points
             if p.model == "averaging" and p.closed_form is not None]
    if not pairs:
        return no_data(section, E1_CLAIMS[0], "no f_avg rows in this run")
    tests = [matches(Measure(p.accuracy, p.n), closed) for p, closed in pairs]
    evidence = "; ".join(f"ε={p.eval_eps:.4g}: {pct(p.accuracy)}% [{pct(t.ci_low)}, "
                         f"{pct(t.ci_high)}] vs {pct(closed)}%"
                         for (p, closed), t in zip(pairs, tests, strict=True))
    return judge(section, E1_CLAIMS[0], every(tests, "closed form inside every 95% interval; "
                                              "two-sided score tests (Bonferroni over ε)"),
                 evidence)


def standard_svm_claim(item: TheoryRun, section: str) -> Claim:
    """One-sided score tests: standard accuracy above 99%, every adversarial one below 1%
    (all must hold: the largest p decides)."""
    dist = item.dist
    if dist.eta * math.sqrt(dist.d) < 4 * (1 - 1e-6):
        return no_data(section, E1_CLAIMS[1], f"Theorem 2.2 needs η ≥ 4/√d; this run has "
                       f"η√d = {dist.eta * math.sqrt(dist.d):.3g}")
    points = [p for p in item.attacked() if p.model == "svm" and p.train_eps == 0]
    if not points:
        return no_data(section, E1_CLAIMS[1], "no standard SVM evaluated at ε ≥ 2η")
    standard = points[0].standard
    worst = max(points, key=lambda p: p.accuracy)
    tests = [threshold(Measure(standard, points[0].n), 0.99, above=True),
             *(threshold(Measure(p.accuracy, p.n), 0.01, above=False) for p in points)]
    return judge(section, E1_CLAIMS[1],
                 every(tests, "one-sided score tests: std > 99% and each adv < 1%"),
                 f"std {pct(standard)}%, adv at most {pct(worst.accuracy)}% over ε ∈ "
                 f"{{{', '.join(f'{p.eval_eps:.4g}' for p in points)}}}")


def adversarial_svm_claim(item: TheoryRun, section: str) -> Claim:
    """Trained at 2η ≤ ε < 2p − 1 (beyond that the optimum is the constant classifier: the
    adversarial hinge loss keeps weight on x1 only while ε < 2p − 1), evaluated clean and at
    every ε < 1. "About p": each accuracy within ``ABOUT_TOLERANCE`` of p (equivalence)."""
    dist = item.dist
    trained = [p for p in item.points if p.model == "svm"
               and theorem_2_1_applies(dist, p.train_eps)
               and p.train_eps < 2 * dist.p - 1 and p.eval_eps < 1]
    if not trained:
        return no_data(section, E1_CLAIMS[2], f"no SVM trained at 2η ≤ ε < 2p − 1 = "
                       f"{2 * dist.p - 1:.3g}")
    tests = [about(Measure(p.accuracy, p.n), dist.p, ABOUT_TOLERANCE) for p in trained]
    accuracies = ", ".join(f"{pct(p.accuracy)}" for p in trained)
    return judge(section, E1_CLAIMS[2],
                 every(tests, f"equivalence within ±{100 * ABOUT_TOLERANCE:g} points of p "
                       "(two one-sided tests per accuracy)"),
                 f"p = {pct(dist.p)}%; train ε = "
                 f"{', '.join(sorted({f'{p.train_eps:.4g}' for p in trained}))}: std and adv "
                 f"{accuracies}%")


def bound_claim(item: TheoryRun, section: str) -> Claim:
    """One-sided: adversarial accuracy at most the bound, shown not to hold when a model lies
    significantly above it (Bonferroni over the models and radii). The bound moves p/(1−p)
    times the standard accuracy's error, and the two errors add rather than in quadrature:
    both accuracies come from the same test sample, and for the x1-only classifier, which sits
    exactly on the bound, they are the same error."""
    ratio = item.dist.p / (1 - item.dist.p)
    checked = [(p, p.bound) for p in item.attacked() if p.bound is not None]
    if not checked:
        return no_data(section, E1_CLAIMS[3], "no model evaluated at ε ≥ 2η")
    tests = [bound(Measure(p.accuracy, p.n), limit,
                   ratio * Measure(p.standard, p.n).standard_error()) for p, limit in checked]
    over = sorted(((p, limit) for p, limit in checked if p.accuracy > limit),
                  key=lambda pair: pair[1] - pair[0].accuracy)
    shown = over[:3] or [min(checked, key=lambda pair: pair[1] - pair[0].accuracy)]
    details = "; ".join(f"{p.model} train ε={p.train_eps:.4g} at ε={p.eval_eps:.4g}: adv "
                        f"{pct(p.accuracy)}% vs bound {pct(limit)}%" for p, limit in shown)
    return judge(section, E1_CLAIMS[3],
                 every(tests, "one-sided z tests of adv − bound (Bonferroni over the models)"),
                 f"{len(checked)} checked; {len(over)} above the bound itself; "
                 + ("closest: " if not over else "") + details)


# --------------------------------------------------------------------------- E2: Figure 1


def falls_text(dataset: str, norm: str, method: str | None = None) -> str:
    trained = f" ({method} training)" if method and method != "pgd" else ""
    return f"{dataset} {norm}{trained}: standard accuracy falls as the training ε grows"


def measure(point: Figure1Point) -> Measure:
    """A Figure 1 point's accuracy with its uncertainty: over its seeds when repeated (its n
    counts the examples of every repeat)."""
    seeds = max(point.seeds, 1)
    return Measure(point.accuracy, max(point.n // seeds, 1), seeds, point.accuracy_std,
                   point.outcome)


def falling(first: Measure, last: Measure, steps: Sequence[tuple[Measure, Measure]],
            name: str) -> Test:
    """"Falls": first against last, one-sided, plus no significant rise between neighbours.

    The claim is shown when first > last is; a rise between neighbours that is significant on
    its own (one-sided, 5%) means it cannot hold; the opposite is shown by last ≥ first or by
    any rise (Bonferroni over those ways to fail)."""
    overall = difference(first, last, name=name)
    rises = [p_or_one(difference(b, a).p_holds) for a, b in steps]
    risen = any(p < ALPHA for p in rises)
    p_against = min(1.0, (1 + len(rises)) * min([p_or_one(overall.p_against), *rises]))
    return replace(overall, p_holds=1.0 if risen else overall.p_holds, p_against=p_against)


def falls_claim(key: CurveKey, points: Sequence[Figure1Point], scale: Scale | None = None,
                paper_scale: Scale | None = None) -> Claim:
    """Standard accuracy at ε 0 above the largest ε (one-sided) with no significant rise step
    by step (``falling``); not judged on models trained fewer than ``MIN_EPOCHS`` epochs."""
    dataset, norm, experiment, method, _ = key
    section, text = f"Figure 1 ({experiment})", falls_text(dataset, norm, method)
    if not points or points[0].train_eps != 0 or len(points) < 2:
        return no_data(section, text, "needs ε_train = 0 and at least one ε_train > 0")
    if scale is not None and scale.epochs is not None and scale.epochs < MIN_EPOCHS:
        return no_data(section, text, f"trained {scale.epochs:g} epoch(s): too few to tell the "
                       f"trade-off from slower convergence (needs ≥ {MIN_EPOCHS})")
    steps = list(zip(points, points[1:], strict=False))
    first, last = points[0], points[-1]
    test = falling(measure(first), measure(last),
                   [(measure(a), measure(b)) for a, b in steps],
                   "ε 0 against the largest ε, one-sided, and no significant rise between "
                   "neighbours")
    rises = [(a, b) for a, b in steps if b.accuracy > a.accuracy]
    paper = TABLE2_EPS.get((dataset, norm))
    evidence = (f"ε 0 → {last.train_eps:.4g}: {pct(first.accuracy)}% → {pct(last.accuracy)}%"
                + (f" (the paper's curve reaches ε {paper:.4g})" if paper else "")
                + "".join(f"; rises ε {a.train_eps:.4g} → {b.train_eps:.4g}: "
                          f"{pct(a.accuracy)}% → {pct(b.accuracy)}%" for a, b in rises))
    return judge(section, text, test, evidence, scale, paper_scale)


def beta_text(dataset: str, norm: str, eps: float) -> str:
    return (f"{dataset} {norm} TRADES at ε {eps:.4g}: standard accuracy falls as β grows "
            "(β moves the model along the trade-off)")


def beta_claim(key: FrontierKey, points: Sequence[tuple[float, Figure1Point]],
               scale: Scale | None = None, paper_scale: Scale | None = None) -> Claim:
    """TRADES' own statement of the trade-off (Zhang et al. 2019): a larger β buys robustness
    with standard accuracy. Judged like ``falls_claim``, with β in place of ε_train."""
    dataset, norm, experiment, _, eps = key
    section, text = f"Figure 1 ({experiment})", beta_text(dataset, norm, eps)
    if len(points) < 2:
        return no_data(section, text, "needs TRADES models at two values of β or more")
    if scale is not None and scale.epochs is not None and scale.epochs < MIN_EPOCHS:
        return no_data(section, text, f"trained {scale.epochs:g} epoch(s): too few to tell the "
                       f"trade-off from slower convergence (needs ≥ {MIN_EPOCHS})")
    pairs = list(zip(points, points[1:], strict=False))
    (first_beta, first), (last_beta, last) = points[0], points[-1]
    test = falling(measure(first), measure(last),
                   [(measure(a[1]), measure(b[1])) for a, b in pairs],
                   "smallest β against the largest, one-sided, and no significant rise "
                   "between neighbours")
    rises = [(a, b) for a, b in pairs if b[1].accuracy > a[1].accuracy]
    evidence = (f"β {first_beta:g} → {last_beta:g}: {pct(first.accuracy)}% → "
                f"{pct(last.accuracy)}%"
                + "".join(f"; rises β {a[0]:g} → {b[0]:g}: {pct(a[1].accuracy)}% → "
                          f"{pct(b[1].accuracy)}%" for a, b in rises))
    return judge(section, text, test, evidence, scale, paper_scale)


# --------------------------------------------------------------------------- E3: Table 4


TABLE4_CLAIMS = (
    "standard test accuracy: standard training > adversarial training",
    f"adversarial test accuracy: adversarial training ≫ standard (by > "
    f"{100 * TABLE4_ADVERSARIAL_GAP:.0f} points)",
    "‖w‖₁ is smaller after adversarial training",
)
LOW_WEIGHT_CLAIM = ("Fig. 2(b): the robust model puts a smaller share of its weight on pixels "
                    "below the correlation threshold")
TOPK_CLAIM = "Fig. 2(c): adversarial accuracy falls as k grows past the threshold"


def table4_claims(found: Sequence[Table4Row], missing_hint: str, scale: Scale | None = None,
                  paper_scale: Scale | None = None) -> list[Claim]:
    by = {row.training: row for row in found}
    if set(by) != {"standard", "adversarial"}:
        missing = ("E3 runs" if not by
                   else f"{({'standard', 'adversarial'} - set(by)).pop()} training")
        return [no_data("Table 4", text, f"no {missing} yet: {missing_hint}")
                for text in TABLE4_CLAIMS]
    std, adv = by["standard"], by["adversarial"]
    claims = [
        _compare(TABLE4_CLAIMS[0], _cell(std, 1, 0), _cell(adv, 1, 0), 0.0,
                 "standard", "adversarial"),
        _compare(TABLE4_CLAIMS[1], _cell(adv, 3, 1), _cell(std, 3, 1),
                 TABLE4_ADVERSARIAL_GAP, "adversarial", "standard"),
        _compare_weights(std.weight_l1, adv.weight_l1),
    ]
    return [_scaled(claim, scale, paper_scale) for claim in claims]


def _scaled(claim: Claim, scale: Scale | None, paper_scale: Scale | None) -> Claim:
    if claim.verdict == "no data":
        return claim
    return replace(claim, scale=scale, paper_scale=paper_scale)


def _cell(row: Table4Row, cell: int, outcome: int) -> Measure | None:
    """A test-split cell of Table 4 with its per-example outcomes (None if missing)."""
    value = row.cells[cell]
    return None if value is None else Measure(value, row.n_test,
                                              outcome=row.test_outcomes[outcome])


def _compare(text: str, larger: Measure | None, smaller: Measure | None, gap: float,
             larger_name: str, smaller_name: str) -> Claim:
    """One-sided: the first accuracy exceeds the second by more than ``gap``; paired when the
    two models were scored on the same examples with their outcomes stored."""
    if larger is None or smaller is None:
        return no_data("Table 4", text, "a cell of Table 4 is missing")
    a, b = larger.value, smaller.value
    test = difference(larger, smaller, gap, f"difference > {100 * gap:g} points, one-sided")
    return judge("Table 4", text, test,
                 f"{larger_name} {pct(a)}% vs {smaller_name} {pct(b)}% "
                 f"(difference {100 * (a - b):+.2f} points)")


def _compare_weights(standard: float | None, adversarial: float | None) -> Claim:
    text = TABLE4_CLAIMS[2]
    if standard is None or adversarial is None:
        return no_data("Table 4", text, "no weight_l1 metric for both models")
    return judge("Table 4", text,
                 by_value(adversarial < standard, adversarial - standard, "‖w‖₁ of the two "
                          "trained models"),
                 f"standard {standard:.2f} vs adversarial {adversarial:.2f} "
                 f"(paper: 41.08 vs 13.69)")


def low_weight_claim(found: Sequence[Table4Row], missing_hint: str, scale: Scale | None = None,
                     paper_scale: Scale | None = None) -> Claim:
    by = {row.training: row.low_weight for row in found}
    standard, adversarial = by.get("standard"), by.get("adversarial")
    if standard is None or adversarial is None:
        return no_data("Figure 2", LOW_WEIGHT_CLAIM, f"no low_correlation_weight_fraction for "
                       f"both models: {missing_hint}")
    return judge("Figure 2", LOW_WEIGHT_CLAIM,
                 by_value(adversarial[0] < standard[0], adversarial[0] - standard[0],
                          "share of the trained weights"),
                 f"share of |w| below |corr| {adversarial[1]:g}: standard "
                 f"{pct(standard[0])}%, adversarial {pct(adversarial[0])}%", scale, paper_scale)


def topk_claim(points: Sequence[TopKPoint], missing_hint: str, scale: Scale | None = None,
               paper_scale: Scale | None = None) -> Claim:
    """Past the k of highest adversarial accuracy (the threshold), the peak against the
    largest k, one-sided, with no significant rise between neighbours (``falling``). The peak
    is chosen on the same data, which favours the claim a little."""
    measured = [(p, p.adversarial) for p in points if p.adversarial is not None]
    if len(measured) < 2:
        return no_data("Figure 2", TOPK_CLAIM, f"needs ≥ 2 values of k: {missing_hint}")
    peak, top = max(measured, key=lambda pair: pair[1])
    after = [(p, acc) for p, acc in measured if p.k >= peak.k]
    last, bottom = after[-1]
    steps = list(zip(after, after[1:], strict=False))
    test = falling(Measure(top, peak.n, outcome=peak.outcome),
                   Measure(bottom, last.n, outcome=last.outcome),
                   [(Measure(x, a.n, outcome=a.outcome), Measure(y, b.n, outcome=b.outcome))
                    for (a, x), (b, y) in steps],
                   "the peak k against the largest, one-sided, and no significant rise "
                   "between neighbours")
    if last.k == peak.k:  # the peak is the largest k: shown false by a rise up to it
        first_k, lowest = measured[0]
        rise = difference(Measure(top, peak.n, outcome=peak.outcome),
                          Measure(lowest, first_k.n, outcome=first_k.outcome))
        assert rise.ci_low is not None and rise.ci_high is not None
        test = replace(test, name="peak at the largest k: the rise from the smallest k to it, "
                       "one-sided", estimate=-rise.estimate, ci_low=-rise.ci_high,
                       ci_high=-rise.ci_low, p_holds=1.0, p_against=rise.p_holds,
                       z=-(rise.z or 0.0))
    rises = [(a, b) for (a, x), (b, y) in steps if y > x]
    return judge("Figure 2", TOPK_CLAIM, test,
                 f"adv peaks at k={peak.k} ({pct(top)}%, std {pct(peak.standard)}%); "
                 f"at k={last.k}: {pct(bottom)}% (std {pct(last.standard)}%)"
                 + "".join(f"; rises k {a.k} → {b.k}" for a, b in rises), scale, paper_scale)


# --------------------------------------------------------------------------- E4-E6


def both_measured(a: Sequence[float] | None,
                  b: Sequence[float] | None) -> list[tuple[float, float]]:
    """The images two per-image series both measured (NaN: not measured), as pairs; none
    when either series is missing or they are not of the same images."""
    if a is None or b is None or len(a) != len(b):
        return []
    return [(x, y) for x, y in zip(a, b, strict=True) if not (math.isnan(x) or math.isnan(y))]


def robust_higher_claim(section: str, text: str, metric: str, missing_hint: str,
                        values: Sequence[Measured],
                        per_image: Mapping[tuple[ModelLabel, Attack], Sequence[float]]
                        | None = None, scale: Scale | None = None,
                        paper_scale: Scale | None = None) -> Claim:
    """Within every attack setting that has both, each robust model scores above every
    standard one.

    Paired over images where the run kept the measure per image for every model compared
    (``per_image``: the same images in the same order): a one-sided paired t test per robust
    and standard pair, all of which must hold (intersection-union, ``every``). Runs that kept
    means only are compared by value (said in the test's name).
    """
    per_image = per_image or {}
    verdicts, evidence, tests = [], [], []
    for attack in sorted({v.attack for v in values}, key=attack_order):
        same = [v for v in values if v.attack == attack]
        robust = [v for v in same if v.model.robust]
        standard = [v for v in same if v.model.robust is False]
        if not robust or not standard:
            continue
        verdicts.append(min(v.value for v in robust) > max(v.value for v in standard))
        where = f"{attack_text(attack)}: " if attack != (None, None) else ""
        evidence.append(where + ", ".join(f"{v.model.describe()} {v.value:.3f}"
                                          for v in sorted(same, key=lambda v: model_order(v.model))))
        for r in robust:
            for s in standard:
                pairs = both_measured(per_image.get((r.model, attack)),
                                      per_image.get((s.model, attack)))
                tests.append(paired_mean([x for x, _ in pairs], [y for _, y in pairs],
                                         f"{where}{r.model.label} above {s.model.label}")
                             if len(pairs) >= 2 else None)
    if not verdicts:
        return no_data(section, text, f"needs `{metric}` for a standard and a robust model: "
                       f"{missing_hint}")
    if tests and all(test is not None for test in tests):
        found = [test for test in tests if test is not None]
        fewest = min(test.n or 0 for test in found)
        means = "; ".join(f"{test.name.split(' (')[0]}: {test.estimate:+.3f}"
                          for test in found)
        return judge(section, text,
                     every(found, f"each robust model above each standard one, per image "
                           f"(one-sided paired t tests over the images both measured, at least "
                           f"{fewest:,}; all must hold)"),
                     "; ".join(evidence) + f"; mean per-image differences: {means}",
                     scale, paper_scale)
    return judge(section, text,
                 by_value(all(verdicts), 0.0, f"`{metric}` means (no per-image values "
                          "stored: not a paired test)"),
                 "; ".join(evidence), scale, paper_scale)
