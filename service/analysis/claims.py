"""Claim verdicts: each claim of the paper that robustlab reproduces, judged on our numbers.

A claim holds, does not hold, or has no data, with the numbers that decide it and the scale
of its evidence (training examples, epochs, test examples). Below the paper's scale a verdict
reads "holds (reduced scale)". Tolerances are sampling error (``common.tolerance``): an
accuracy ``a`` measured on ``n`` examples has standard error ``sqrt(a (1 - a) / n)``, and a
claim allows ``SIGMAS`` of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from service.analysis.common import SIGMAS, tolerance
from service.analysis.figure1 import CurveKey, Figure1Point, FrontierKey
from service.analysis.gallery import Measured, attack_order, attack_text, model_order
from service.analysis.paper import MIN_EPOCHS, TABLE2_EPS, TABLE4_ADVERSARIAL_GAP, Scale
from service.analysis.table4 import Table4Row, TopKPoint
from service.analysis.theory import TheoryPoint, TheoryRun, theorem_2_1_applies

Verdict = Literal["holds", "fails", "no_data"]
VERDICT_LABELS: dict[Verdict, str] = {
    "holds": "✅ holds", "fails": "❌ does not hold", "no_data": "➖ no data",
}
REDUCED = " (reduced scale)"
__all__ = ["SIGMAS", "Claim", "Verdict", "VERDICT_LABELS"]


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

    @property
    def reduced(self) -> bool:
        """Judged on less than the paper's data or training."""
        return (self.verdict != "no_data" and self.scale is not None
                and self.paper_scale is not None and self.scale.below(self.paper_scale))

    @property
    def label(self) -> str:
        return VERDICT_LABELS[self.verdict] + (REDUCED if self.reduced else "")

    def scale_text(self) -> str:
        return "–" if self.scale is None else self.scale.text()


def judge(section: str, text: str, holds: bool, evidence: str, scale: Scale | None = None,
          paper_scale: Scale | None = None) -> Claim:
    return Claim(section, text, "holds" if holds else "fails", evidence, scale, paper_scale)


def no_data(section: str, text: str, reason: str) -> Claim:
    return Claim(section, text, "no_data", reason)


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
    return [Claim(c.section, c.text, c.verdict, c.evidence,
                  scale if c.verdict != "no_data" else None)
            for c in (averaging_claim(item, section), standard_svm_claim(item, section),
                      adversarial_svm_claim(item, section), bound_claim(item, section))]


def averaging_claim(item: TheoryRun, section: str) -> Claim:
    pairs = [(p, p.closed_form) for p in item.points
             if p.model == "averaging" and p.closed_form is not None]
    if not pairs:
        return no_data(section, E1_CLAIMS[0], "no f_avg rows in this run")
    misses = [p for p, closed in pairs if abs(p.accuracy - closed) > tolerance((closed, p.n))]
    evidence = "; ".join(f"ε={p.eval_eps:.4g}: {pct(p.accuracy)}% vs {pct(closed)}% "
                         f"(±{pct(tolerance((closed, p.n)))})" for p, closed in pairs)
    return judge(section, E1_CLAIMS[0], not misses, evidence)


def standard_svm_claim(item: TheoryRun, section: str) -> Claim:
    dist = item.dist
    if dist.eta * math.sqrt(dist.d) < 4 * (1 - 1e-6):
        return no_data(section, E1_CLAIMS[1], f"Theorem 2.2 needs η ≥ 4/√d; this run has "
                       f"η√d = {dist.eta * math.sqrt(dist.d):.3g}")
    points = [p for p in item.attacked() if p.model == "svm" and p.train_eps == 0]
    if not points:
        return no_data(section, E1_CLAIMS[1], "no standard SVM evaluated at ε ≥ 2η")
    standard = points[0].standard
    worst = max(p.accuracy for p in points)
    return judge(section, E1_CLAIMS[1], standard > 0.99 and worst < 0.01,
                 f"std {pct(standard)}%, adv at most {pct(worst)}% over ε ∈ "
                 f"{{{', '.join(f'{p.eval_eps:.4g}' for p in points)}}}")


def adversarial_svm_claim(item: TheoryRun, section: str) -> Claim:
    """Trained at 2η ≤ ε < 2p − 1 (beyond that the optimum is the constant classifier: the
    adversarial hinge loss keeps weight on x1 only while ε < 2p − 1), evaluated clean and at
    every ε < 1."""
    dist = item.dist
    trained = [p for p in item.points if p.model == "svm"
               and theorem_2_1_applies(dist, p.train_eps)
               and p.train_eps < 2 * dist.p - 1 and p.eval_eps < 1]
    if not trained:
        return no_data(section, E1_CLAIMS[2], f"no SVM trained at 2η ≤ ε < 2p − 1 = "
                       f"{2 * dist.p - 1:.3g}")
    misses = [p for p in trained if abs(p.accuracy - dist.p) > tolerance((dist.p, p.n))]
    accuracies = ", ".join(f"{pct(p.accuracy)}" for p in trained)
    return judge(section, E1_CLAIMS[2], not misses,
                 f"p = {pct(dist.p)}%; train ε = "
                 f"{', '.join(sorted({f'{p.train_eps:.4g}' for p in trained}))}: std and adv "
                 f"{accuracies}% (±{pct(tolerance((dist.p, trained[0].n)))})")


def bound_claim(item: TheoryRun, section: str) -> Claim:
    """Adversarial accuracy at most the bound, allowing the sampling error of both accuracies
    (the theorem is about the population; the bound moves p/(1−p) times the standard
    accuracy's error). The two errors add rather than in quadrature: both accuracies come from
    the same test sample, and for the x1-only classifier, which sits exactly on the bound, they
    are the same error."""
    ratio = item.dist.p / (1 - item.dist.p)
    checked = [(p, p.bound) for p in item.attacked() if p.bound is not None]
    if not checked:
        return no_data(section, E1_CLAIMS[3], "no model evaluated at ε ≥ 2η")

    def allowed(p: TheoryPoint) -> float:
        return tolerance((p.accuracy, p.n)) + ratio * tolerance((p.standard, p.n))

    over = sorted(((p, bound) for p, bound in checked if p.accuracy > bound),
                  key=lambda pair: pair[1] - pair[0].accuracy)
    beyond = [p for p, bound in over if p.accuracy > bound + allowed(p)]
    shown = over[:3] or [min(checked, key=lambda pair: pair[1] - pair[0].accuracy)]
    details = "; ".join(f"{p.model} train ε={p.train_eps:.4g} at ε={p.eval_eps:.4g}: adv "
                        f"{pct(p.accuracy)}% vs bound {pct(bound)}% (±{pct(allowed(p))})"
                        for p, bound in shown)
    return judge(section, E1_CLAIMS[3], not beyond,
                 f"{len(checked) - len(beyond)}/{len(checked)} within; "
                 f"{len(over)} above the bound itself; " + ("closest: " if not over else "")
                 + details)


# --------------------------------------------------------------------------- E2: Figure 1


def falls_text(dataset: str, norm: str, method: str | None = None) -> str:
    trained = f" ({method} training)" if method and method != "pgd" else ""
    return f"{dataset} {norm}{trained}: standard accuracy falls as the training ε grows"


def falls_claim(key: CurveKey, points: Sequence[Figure1Point], scale: Scale | None = None,
                paper_scale: Scale | None = None) -> Claim:
    """Non-increasing step by step within sampling tolerance, and strictly lower at the
    largest ε than at ε 0; not judged on models trained fewer than ``MIN_EPOCHS`` epochs."""
    dataset, norm, experiment, method, _ = key
    section, text = f"Figure 1 ({experiment})", falls_text(dataset, norm, method)
    if not points or points[0].train_eps != 0 or len(points) < 2:
        return no_data(section, text, "needs ε_train = 0 and at least one ε_train > 0")
    if scale is not None and scale.epochs is not None and scale.epochs < MIN_EPOCHS:
        return no_data(section, text, f"trained {scale.epochs:g} epoch(s): too few to tell the "
                       f"trade-off from slower convergence (needs ≥ {MIN_EPOCHS})")
    rises = [(a, b) for a, b in zip(points, points[1:], strict=False)
             if b.accuracy > a.accuracy + tolerance((a.accuracy, a.n), (b.accuracy, b.n))]
    first, last = points[0], points[-1]
    paper = TABLE2_EPS.get((dataset, norm))
    evidence = (f"ε 0 → {last.train_eps:.4g}: {pct(first.accuracy)}% → {pct(last.accuracy)}%"
                + (f" (the paper's curve reaches ε {paper:.4g})" if paper else "")
                + "".join(f"; rises ε {a.train_eps:.4g} → {b.train_eps:.4g}: "
                          f"{pct(a.accuracy)}% → {pct(b.accuracy)}%" for a, b in rises))
    return judge(section, text, not rises and last.accuracy < first.accuracy, evidence, scale,
                 paper_scale)


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
    rises = [(a, b) for a, b in pairs if b[1].accuracy > a[1].accuracy + tolerance(
        (a[1].accuracy, a[1].n), (b[1].accuracy, b[1].n))]
    (first_beta, first), (last_beta, last) = points[0], points[-1]
    evidence = (f"β {first_beta:g} → {last_beta:g}: {pct(first.accuracy)}% → "
                f"{pct(last.accuracy)}%"
                + "".join(f"; rises β {a[0]:g} → {b[0]:g}: {pct(a[1].accuracy)}% → "
                          f"{pct(b[1].accuracy)}%" for a, b in rises))
    return judge(section, text, not rises and last.accuracy < first.accuracy, evidence, scale,
                 paper_scale)


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
        _compare(TABLE4_CLAIMS[0], std.cells[1], adv.cells[1], 0.0, "standard", "adversarial"),
        _compare(TABLE4_CLAIMS[1], adv.cells[3], std.cells[3], TABLE4_ADVERSARIAL_GAP,
                 "adversarial", "standard"),
        _compare_weights(std.weight_l1, adv.weight_l1),
    ]
    return [_scaled(claim, scale, paper_scale) for claim in claims]


def _scaled(claim: Claim, scale: Scale | None, paper_scale: Scale | None) -> Claim:
    if claim.verdict == "no_data":
        return claim
    return Claim(claim.section, claim.text, claim.verdict, claim.evidence, scale, paper_scale)


def _compare(text: str, larger: float | None, smaller: float | None, gap: float,
             larger_name: str, smaller_name: str) -> Claim:
    if larger is None or smaller is None:
        return no_data("Table 4", text, "a cell of Table 4 is missing")
    return judge("Table 4", text, larger - smaller > gap,
                 f"{larger_name} {pct(larger)}% vs {smaller_name} {pct(smaller)}% "
                 f"(difference {100 * (larger - smaller):+.2f} points)")


def _compare_weights(standard: float | None, adversarial: float | None) -> Claim:
    text = TABLE4_CLAIMS[2]
    if standard is None or adversarial is None:
        return no_data("Table 4", text, "no weight_l1 metric for both models")
    return judge("Table 4", text, adversarial < standard,
                 f"standard {standard:.2f} vs adversarial {adversarial:.2f} "
                 f"(paper: 41.08 vs 13.69)")


def low_weight_claim(found: Sequence[Table4Row], missing_hint: str, scale: Scale | None = None,
                     paper_scale: Scale | None = None) -> Claim:
    by = {row.training: row.low_weight for row in found}
    standard, adversarial = by.get("standard"), by.get("adversarial")
    if standard is None or adversarial is None:
        return no_data("Figure 2", LOW_WEIGHT_CLAIM, f"no low_correlation_weight_fraction for "
                       f"both models: {missing_hint}")
    return judge("Figure 2", LOW_WEIGHT_CLAIM, adversarial[0] < standard[0],
                 f"share of |w| below |corr| {adversarial[1]:g}: standard "
                 f"{pct(standard[0])}%, adversarial {pct(adversarial[0])}%", scale, paper_scale)


def topk_claim(points: Sequence[TopKPoint], missing_hint: str, scale: Scale | None = None,
               paper_scale: Scale | None = None) -> Claim:
    """Past the k of highest adversarial accuracy (the threshold) it does not rise again beyond
    tolerance, and at the largest k it is lower by more than the tolerance."""
    measured = [(p, p.adversarial) for p in points if p.adversarial is not None]
    if len(measured) < 2:
        return no_data("Figure 2", TOPK_CLAIM, f"needs ≥ 2 values of k: {missing_hint}")
    peak, top = max(measured, key=lambda pair: pair[1])
    after = [(p, acc) for p, acc in measured if p.k >= peak.k]
    last, bottom = after[-1]
    rises = [(a, b) for (a, x), (b, y) in zip(after, after[1:], strict=False)
             if y > x + tolerance((x, a.n), (y, b.n))]
    holds = last.k > peak.k and top - bottom > tolerance((top, peak.n), (bottom, last.n))
    return judge("Figure 2", TOPK_CLAIM, holds and not rises,
                 f"adv peaks at k={peak.k} ({pct(top)}%, std {pct(peak.standard)}%); "
                 f"at k={last.k}: {pct(bottom)}% (std {pct(last.standard)}%)"
                 + "".join(f"; rises k {a.k} → {b.k}" for a, b in rises), scale, paper_scale)


# --------------------------------------------------------------------------- E4-E6


def robust_higher_claim(section: str, text: str, metric: str, missing_hint: str,
                        values: Sequence[Measured]) -> Claim:
    """Within every attack setting that has both, each robust model scores above every
    standard one."""
    verdicts, evidence = [], []
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
    if not verdicts:
        return no_data(section, text, f"needs `{metric}` for a standard and a robust model: "
                       f"{missing_hint}")
    return judge(section, text, all(verdicts), "; ".join(evidence))
