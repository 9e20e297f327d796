"""``report``: a thin command over ``service.report.generate``.

The report draws with matplotlib (about a second to import), so it is imported inside the
command: ``robustlab --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from service.cli.common import friendly_errors, open_store, out


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
@friendly_errors
def report(out_dir: Path, experiments: Sequence[str], markdown: Path | None) -> None:
    """Write a Markdown report (and LaTeX tables) of Table 4 and Figures 1-8 from the database.

    \b
    Every claim of the paper is checked on the succeeded runs and marked
    holds / does not hold / no data, with the numbers that decide it and the paper's numbers
    beside ours. A section without runs names the spec to run. Writes DIR/report.md,
    DIR/figures/*.png and DIR/tables/*.tex; prints the path and the claims.
    """
    from service.report import generate  # matplotlib

    result = generate(open_store(), out_dir, tuple(experiments), markdown=markdown)
    out.print(f"wrote {markdown or out_dir / 'report.md'}", markup=False)
    for claim in result.claims:
        out.print(f"{claim.label:<18} {claim.section}: {claim.text}", markup=False)


COMMANDS: list[click.Command] = [report]
