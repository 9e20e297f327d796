"""The report as a whole: sections in the paper's order, the claims table, provenance, and
writing it out (Markdown, ``figures/*.png``, ``tables/*.tex``)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from service.analysis.claims import VERDICT_LABELS, Claim, settle_claims
from service.analysis.evidence import ALPHA
from service.report.inputs import ReportInputs
from service.report.provenance import provenance_markdown
from service.report.render import FIGURES, claim_list, markdown_table
from service.store.entities import ArtifactInfo, RunInfo


@dataclass
class Section:
    """One part of the report: its Markdown, claims, figures and tables."""

    title: str
    markdown: list[str] = field(default_factory=list)
    """Paragraphs, tables and image links, joined by blank lines."""
    claims: list[Claim] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    """Regenerated PNGs: file name under ``figures/`` -> bytes."""
    copies: dict[str, ArtifactInfo] = field(default_factory=dict)
    """The runs' own pictures: file name under ``figures/`` -> the artifact to copy."""
    tables: dict[str, str] = field(default_factory=dict)
    """LaTeX: file name under ``tables/`` -> text."""
    run_ids: set[str] = field(default_factory=set)
    """The runs whose numbers or pictures the section shows (for the provenance table)."""


@dataclass
class Report:
    sections: list[Section]
    inputs: ReportInputs
    generated_at: datetime

    @property
    def claims(self) -> list[Claim]:
        return [claim for section in self.sections for claim in section.claims]

    def used_runs(self) -> list[RunInfo]:
        ids = set().union(*(section.run_ids for section in self.sections))
        return [run for run in self.inputs.runs if run.id in ids]

    def markdown(self, figures: str = FIGURES) -> str:
        """The Markdown; ``figures`` is the figures' directory relative to where it is read."""
        parts = [self._header(), "## Claims", self._summary()]
        for section in self.sections:
            parts.append(f"## {section.title}")
            parts += section.markdown
            if section.claims:
                parts.append(claim_list(section.claims))
        parts += ["## Provenance", provenance_markdown(self.used_runs(), self.inputs.specs)]
        text = "\n\n".join(parts) + "\n"
        return text if figures == FIGURES else text.replace(f"]({FIGURES}/", f"]({figures}/")

    def _header(self) -> str:
        scope = (", ".join(f"`{name}`" for name in self.inputs.experiments)
                 if self.inputs.experiments else "all experiments")
        left_out = ", ".join(f"{count} {status}" for status, count
                             in sorted(self.inputs.left_out.items()))
        return "\n".join([
            '# robustlab report: "Robustness may be at odds with accuracy"',
            "",
            f"Generated {self.generated_at:%Y-%m-%d %H:%M} UTC from {len(self.inputs.runs)} "
            f"succeeded run(s) of {scope}"
            + (f"; left out (not succeeded): {left_out}." if left_out else "."),
            "Accuracies are percentages of the test split unless a column says otherwise. "
            + uncertainty_note(self.claims) + " Each claim names the scale of its evidence (training examples, epochs, test examples); below the "
            "paper's scale its verdict says \"(reduced scale)\". Figure 1 averages repeats "
            "(runs of one spec that differ only by the seed; mean ± std) and uses the newest "
            "spec of each cell; elsewhere the newest run is used.",
        ])

    def _summary(self) -> str:
        rows = [[str(i), claim.section, claim.text, claim.label, claim.detail,
                 claim.scale_text()] for i, claim in enumerate(self.claims, 1)]
        counts = Counter(claim.verdict for claim in self.claims)
        reduced = sum(claim.reduced for claim in self.claims)
        totals = ", ".join(f"{counts[v]} {VERDICT_LABELS[v]}" for v in VERDICT_LABELS)
        totals += f" ({reduced} at reduced scale)" if reduced else ""
        return totals + "\n\n" + markdown_table(
            ["#", "section", "claim", "verdict", "numbers", "scale"], rows)


def uncertainty_note(claims: Sequence[Claim]) -> str:
    """What the verdicts mean and what their intervals do and do not cover."""
    family = sum(claim.test is not None and not claim.test.by_value for claim in claims)
    return (f"Each claim is judged by the test it names, at the family-wise {100 * ALPHA:g}% "
            f"level: Holm's step-down over the {family} tested claim(s) with data in this "
            "report. A claim holds when its test shows it, does not hold when the opposite is "
            "shown, and is unresolved when neither is (it then says roughly how many examples "
            "or seeds would settle it); deterministic quantities are compared by value. "
            "Intervals are 95% and cover sampling variation (the test examples) and seed "
            "variation (where a cell was repeated), not the weakness of an attack: a robust "
            "accuracy remains an upper bound on the true one. Comparisons say whether they "
            "were paired (the same examples) or unpaired.")


def settle_sections(sections: Sequence[Section]) -> None:
    """Re-judge every section's claims together (Holm over the report's family), in place."""
    settled = iter(settle_claims([claim for section in sections for claim in section.claims]))
    for section in sections:
        section.claims = [next(settled) for _ in section.claims]


def write_report(report: Report, out_dir: Path, read: Callable[[ArtifactInfo], bytes],
                 markdown: Path | None = None) -> Path:
    """Write the Markdown, ``figures/`` and ``tables/`` under ``out_dir``; return the Markdown.

    The Markdown goes to ``out_dir/report.md`` unless ``markdown`` names another file (e.g.
    ``docs/reproduction.md``); its image links then point into ``out_dir/figures``. ``read``
    gives an artifact's bytes. Each figure is written once; files of an earlier report that
    this one does not write are left alone.
    """
    figures, tables = out_dir / FIGURES, out_dir / "tables"
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    for section in report.sections:
        for name, data in section.figures.items():
            (figures / name).write_bytes(data)
        for name, artifact in section.copies.items():
            (figures / name).write_bytes(read(artifact))
        for name, text in section.tables.items():
            (tables / name).write_text(text)
    path = markdown or out_dir / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    relative = Path(os.path.relpath(figures.resolve(), path.parent.resolve())).as_posix()
    path.write_text(report.markdown(relative))
    return path
