"""``robustlab report --format json``: the claims as data, for scripts and CI.

One object: when and from what the report was generated, the family's size and level, the
count of each verdict, and one entry per claim with its verdict (``holds``, ``does not hold``,
``unresolved``, ``no data``), its test and evidence, and its scale.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from service.analysis.claims import Claim
from service.analysis.evidence import ALPHA, VERDICTS
from service.analysis.paper import Scale
from service.report.document import Report

TEST_KEYS = ("name", "estimate", "ci_low", "ci_high", "p", "p_holm", "p_holds", "p_against",
             "n", "seeds", "paired", "by_value", "needed")
"""The keys of a claim's ``test`` object (null where the claim has no data)."""
CLAIM_KEYS = ("section", "claim", "verdict", "label", "reduced_scale", "evidence", "test",
              "scale", "paper_scale")
"""The keys of every claim entry."""


def _scale(scale: Scale | None) -> dict[str, Any] | None:
    return None if scale is None else asdict(scale)


def claim_dict(claim: Claim) -> dict[str, Any]:
    test = None if claim.test is None else {key: getattr(claim.test, key) for key in TEST_KEYS}
    return {"section": claim.section, "claim": claim.text, "verdict": claim.verdict,
            "label": claim.label, "reduced_scale": claim.reduced, "evidence": claim.evidence,
            "test": test, "scale": _scale(claim.scale), "paper_scale": _scale(claim.paper_scale)}


def report_dict(report: Report) -> dict[str, Any]:
    """The whole JSON document of ``report --format json``."""
    claims = report.claims
    counts = Counter(claim.verdict for claim in claims)
    return {
        "generated_at": report.generated_at.isoformat(),
        "runs": len(report.inputs.runs),
        "alpha": ALPHA,
        "family": sum(claim.test is not None and not claim.test.by_value for claim in claims),
        "counts": {verdict: counts[verdict] for verdict in VERDICTS},
        "claims": [claim_dict(claim) for claim in claims],
    }
