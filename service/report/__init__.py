"""``robustlab report``: the paper's tables and figures regenerated from the results database.

``collect`` (``inputs``) reads the succeeded runs through ``Store``; ``build_report`` turns
them into sections, one module each (``theory``, ``figure1``, ``evaluations``, ``table4``,
``galleries``, ``overfitting``), whose numbers and claim verdicts come from ``service.analysis`` (the dashboard reads the same);
``render`` formats them (Markdown, LaTeX via ``service.results.latex_tabular``, PNGs with
matplotlib's Agg canvas); ``write_report`` (``document``) writes the Markdown,
``figures/*.png`` and ``tables/*.tex``. The paper's printed numbers live in
``service.analysis.paper``.

Every claim is marked holds / does not hold / unresolved / no data, with the numbers that
decide it, its test and evidence (Holm-adjusted over the report's claims) and the scale of its
evidence; below the paper's scale it says "(reduced scale)".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from service.report.document import Report, Section, settle_sections, write_report
from service.report.evaluations import evaluations_section
from service.report.figure1 import figure1_section
from service.report.galleries import GALLERIES, gallery_section
from service.report.inputs import ReportInputs, collect
from service.report.overfitting import overfitting_section
from service.report.table4 import table4_section
from service.report.theory import theory_section
from service.store.repository import Store

__all__ = ["Report", "ReportInputs", "Section", "build_report", "collect", "generate",
           "write_report"]


def build_report(inputs: ReportInputs, now: datetime | None = None) -> Report:
    """Every section, in the paper's order."""
    evaluations = evaluations_section(inputs)
    overfitting = overfitting_section(inputs)
    sections = [
        theory_section(inputs),
        figure1_section(inputs),
        *([evaluations] if evaluations else []),
        table4_section(inputs),
        *(gallery_section(inputs, gallery) for gallery in GALLERIES),
        *([overfitting] if overfitting else []),
    ]
    settle_sections(sections)  # one family: Holm over every claim with data
    return Report(sections, inputs, now or datetime.now(UTC))


def generate(store: Store, out_dir: Path, experiments: Sequence[str] = (),
             markdown: Path | None = None) -> Report:
    """Collect, build and write the report; what ``robustlab report`` does.

    The Markdown goes to ``out_dir/report.md``, or to ``markdown`` when given (its image links
    then point into ``out_dir/figures``).
    """
    report = build_report(collect(store, experiments))
    write_report(report, out_dir, lambda artifact: store.storage.get(artifact.path), markdown)
    return report
