"""The ``robustlab report`` command: the paper's tables and figures from the results database.

``service.cli`` adds every command in ``COMMANDS`` to ``robustlab``. Matplotlib and the report
module are imported inside the command (``robustlab --help`` stays fast), and ``service.cli``'s
helpers too, because ``service.cli`` imports this module while it loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("report"), show_default=True,
              help="Directory for report.md, figures/ and tables/.")
@click.option("--experiment", "experiments", multiple=True, metavar="NAME",
              help="Only runs of this experiment (repeatable; default: every experiment).")
def report(out_dir: Path, experiments: Sequence[str]) -> None:
    """Write a Markdown report (and LaTeX tables) of Table 4 and Figures 1-8 from the database.

    \b
    Every claim of the paper is checked on the succeeded runs and marked
    holds / does not hold / no data, with the numbers that decide it and the paper's numbers
    beside ours. A section without runs names the spec to run. Writes DIR/report.md,
    DIR/figures/*.png and DIR/tables/*.tex; prints the path and the claims.
    """
    from service.cli import _friendly_errors

    _friendly_errors(_write)(out_dir, tuple(experiments))


def _write(out_dir: Path, experiments: tuple[str, ...]) -> None:
    from service.cli import out
    from service.report import generate
    from service.store.repository import Store

    result = generate(Store.from_settings(), out_dir, experiments)
    out.print(f"wrote {out_dir / 'report.md'}", markup=False)
    for claim in result.claims:
        out.print(f"{claim.label:<18} {claim.section}: {claim.text}", markup=False)


COMMANDS = [report]
