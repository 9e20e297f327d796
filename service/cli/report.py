"""``report``: a thin command over ``service.report.generate``.

The report draws with matplotlib (about a second to import), so it is imported inside the
command: ``robustlab --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from service import jsonout
from service.cli.common import err, friendly_errors, open_store, out


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("report"), show_default=True,
              help="Directory for report.md, figures/ and tables/.")
@click.option("--experiment", "experiments", multiple=True, metavar="NAME",
              help="Only runs of this experiment (repeatable; default: every experiment).")
@click.option("--markdown", "markdown", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="Write the Markdown here instead of DIR/report.md (e.g. docs/reproduction.md);"
                   " its image links point into DIR/figures.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="What to print once the report is written: the claims as lines, or as JSON "
                   "(verdict, test, evidence, scale) for scripts and CI.")
@friendly_errors
def report(out_dir: Path, experiments: Sequence[str], markdown: Path | None, fmt: str) -> None:
    """Write a Markdown report (and LaTeX tables) of Table 4 and Figures 1-8 from the database.

    \b
    Every claim of the paper is checked on the succeeded runs and marked
    holds / does not hold / unresolved / no data by the test it names (one-sided z or Welch
    t tests, equivalence, score tests), Holm-adjusted over every claim with data, with its
    evidence (difference or value, 95% interval, p, n, seeds, paired or not) and the paper's
    numbers beside ours. Intervals cover sampling and seed variation, not the weakness of an
    attack. A section without runs names the spec to run. Writes DIR/report.md,
    DIR/figures/*.png and DIR/tables/*.tex; prints the path and the claims.

    \b
    --format json prints one object: generated_at, runs, alpha, family (claims in the Holm
    family), counts (per verdict) and claims, each with section, claim, verdict, label,
    reduced_scale, evidence, test (name, estimate, ci_low, ci_high, p, p_holm, p_holds,
    p_against, n, seeds, paired, by_value, needed; null with no data), scale, paper_scale.
    """
    from service.report import generate  # matplotlib
    from service.report.claims_json import report_dict

    result = generate(open_store(), out_dir, tuple(experiments), markdown=markdown)
    if fmt == "json":
        err.print(f"wrote {markdown or out_dir / 'report.md'}", markup=False)
        click.echo(jsonout.dumps(report_dict(result)))
        return
    out.print(f"wrote {markdown or out_dir / 'report.md'}", markup=False)
    for claim in result.claims:
        out.print(f"{claim.label:<18} {claim.section}: {claim.text}", markup=False)


COMMANDS: list[click.Command] = [report]
