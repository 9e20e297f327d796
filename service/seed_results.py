"""``robustlab results --over-seeds``: result rows pooled over seeds, as table, CSV or JSON.

The numbers come from ``service.analysis.seeds.over_seeds`` (one computation; the report and
the dashboard read the same); this module fetches the runs they need and renders the rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from contract.columns import VARIED_DEFAULTS
from service import jsonout
from service.analysis.common import RunFacts
from service.analysis.seeds import KEY_COLUMNS, OVER_SEEDS_COLUMNS, over_seeds
from service.store.repository import Store
from service.store.session import RunNotFound


def fetch_over_seeds(store: Store, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``over_seeds`` of ``rows`` with their runs (and the runs their ``source.run`` names)
    read from ``store``, each once."""
    runs: dict[str, RunFacts | None] = {}

    def lookup(run_id: str) -> RunFacts | None:
        if run_id not in runs:
            try:
                runs[run_id] = store.get_run(run_id)
            except RunNotFound:
                runs[run_id] = None
        return runs[run_id]

    for run_id in dict.fromkeys(str(row["run_id"]) for row in rows):
        lookup(run_id)
    known = {run_id: run for run_id, run in runs.items() if run is not None}
    return over_seeds(rows, known, lookup)


def to_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return jsonout.dumps([{key: row.get(key) for key in OVER_SEEDS_COLUMNS} for row in rows])


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV; the list columns (``seed_values``, ``run_ids``) are joined with spaces."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(OVER_SEEDS_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: " ".join(map(str, row[key])) if isinstance(row.get(key), list)
                         else row.get(key) for key in OVER_SEEDS_COLUMNS})
    return out.getvalue()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def to_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """The key columns that are not empty in every row, then mean ± std (percent), the t
    interval, the number of seeds and n."""
    columns = [c for c in KEY_COLUMNS if c != "kind"
               and any(row.get(c) not in (None, "") for row in rows)
               and (c not in VARIED_DEFAULTS or any(row.get(c) != VARIED_DEFAULTS[c]
                                                     for row in rows))]
    table = Table(title=title or "accuracy over seeds (mean ± std, 95% t interval, %)",
                  header_style="bold")
    for column in columns:
        table.add_column(column)
    for column in ("mean ± std", "95% CI", "seeds", "n"):
        table.add_column(column, justify="right")
    for row in rows:
        spread = "" if row["std"] is None else f" ± {100 * row['std']:.2f}"
        interval = ("-" if row["ci_low"] is None
                    else f"[{_percent(row['ci_low'])}, {_percent(row['ci_high'])}]")
        table.add_row(*(escape("-" if row.get(c) is None else f"{row[c]:g}"
                               if isinstance(row.get(c), float) else str(row.get(c)))
                        for c in columns),
                      f"{_percent(row['mean'])}{spread}", interval, str(row["seeds"]),
                      "-" if row["n"] is None else str(row["n"]))
    return table
