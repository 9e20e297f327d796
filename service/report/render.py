"""Formatting shared by the report's sections: numbers, Markdown and LaTeX tables, PNGs, links.

Also where the specs that reproduce each section live, so a section without runs can say what
to run.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from service.analysis.claims import Claim, pct
from service.results import latex_tabular
from service.store.entities import ArtifactInfo

__all__ = ["pct"]

E1_SPEC = "specs/paper/e1_theory.yaml"
FIG1_SPECS = {
    "mnist": "specs/paper/e2_fig1_mnist.yaml",
    "cifar10": "specs/paper/e2_fig1_cifar10.yaml",
    "restricted_imagenet": "specs/paper/e2_fig1_restricted_imagenet.yaml",
}
TABLE4_SPEC = "specs/paper/e3_table4_binary_mnist.yaml"
FIG2_SPEC = "specs/paper/e3_fig2_linear_features.yaml"


def num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def pct_std(mean: float, std: float | None) -> str:
    """"97.10" for one run, "97.10 ± 0.31" for the mean and std over repeats."""
    return pct(mean) if std is None else f"{pct(mean)} ± {100 * std:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; ``|`` inside cells is escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def claim_list(claims: Sequence[Claim]) -> str:
    return "\n".join(f"- {claim.label}: {claim.text} — {claim.section} ({claim.detail}"
                     + (f"; scale: {claim.scale_text()}" if claim.scale else "") + ")"
                     for claim in claims)


def run_hint(spec: str) -> str:
    return f"`robustlab run {spec}`"


LATEX_WORDS = {"ε": "eps", "η": "eta", "‖w‖₁": "L1 norm of w", "‖w_rest‖₁": "L1 of w rest",
               "|w1|": "abs w1", "–": "--", "±": "+/-"}
"""Unicode of the Markdown tables spelled out for LaTeX (pdflatex lacks these glyphs)."""


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str,
                caption: str) -> str:
    """``latex_tabular`` of a Markdown table's cells, with its Unicode spelled out."""
    def ascii_text(text: str) -> str:
        for word, spelled in LATEX_WORDS.items():
            text = text.replace(word, spelled)
        return text

    return latex_tabular([ascii_text(h) for h in header],
                         [[ascii_text(c) for c in row] for row in rows],
                         align=align, caption=caption)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def copy_name(artifact: ArtifactInfo) -> str:
    """The file name of an artifact's copy under ``figures/``: unique per run and name."""
    return safe_name(f"{artifact.run_id}_{artifact.name}")


FIGURES = "figures"
"""The figures' directory under the output directory; links are relative to it
(``Report.markdown`` rewrites them when the Markdown is written elsewhere)."""


def image(path: str, alt: str) -> str:
    return f"![{alt}]({FIGURES}/{path})"


def png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()
