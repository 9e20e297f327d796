"""Flat result rows and their renderings: a terminal table, CSV, JSON, LaTeX and pandas.

One row per evaluation. Accuracy is a fraction in [0, 1]; standard accuracy is the row with
``eval_eps`` 0 and ``attack`` "none".
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

from service.store.repository import Store

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "run_id", "experiment", "kind", "model", "dataset", "split", "train_norm", "train_eps",
    "eval_norm", "eval_eps", "attack", "steps", "step_size", "restarts", "accuracy", "n",
    "variant", "checks_passed",
)
"""The keys of every JSON/CSV row (a contract: scripts parse these)."""

TABLE_COLUMNS = ("run_id", "model", "dataset", "train_norm", "train_eps", "eval_norm", "eval_eps",
                 "attack", "steps", "accuracy", "n", "variant", "checks_passed")


def fetch_rows(store: Store, *, experiment: str | None = None,
               run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    return [{key: row.get(key) for key in COLUMNS}
            for row in store.results(experiment=experiment, run_ids=run_ids)]


def results_frame(store: Store | None = None, *, experiment: str | None = None) -> pd.DataFrame:
    """The results as a DataFrame, for notebooks: ``results_frame(experiment="e1_theory")``."""
    import pandas as pd  # half a second to import: only notebooks pay for it, not the CLI

    store = store or Store.from_settings()
    return pd.DataFrame(fetch_rows(store, experiment=experiment), columns=list(COLUMNS))


def _cell(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key == "accuracy":
        return f"{100 * value:.2f}%"
    if key == "checks_passed":
        return "ok" if value else "FAILED"
    if isinstance(value, float):
        return f"{value:.4g}" if not math.isnan(value) else "nan"
    return str(value)


def to_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    columns = [c for c in TABLE_COLUMNS if any(row.get(c) not in (None, "") for row in rows)]
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in {"train_eps", "eval_eps", "steps",
                                                                "accuracy", "n"} else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(c), c) for c in columns))
    return table


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps([{key: row.get(key) for key in COLUMNS} for row in rows], indent=2)


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_tabular(header: Sequence[str], body: Sequence[Sequence[str]], *,
                  align: str | None = None, caption: str | None = None) -> str:
    """A booktabs table; cells are escaped here, so pass plain text."""
    align = align or "l" * len(header)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
              " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_latex(rows: Sequence[dict[str, Any]], caption: str | None = None) -> str:
    columns = [c for c in TABLE_COLUMNS if c not in {"run_id", "checks_passed"}
               and any(row.get(c) not in (None, "") for row in rows)]
    body = [[_cell(row.get(c), c).replace("%", "") if c == "accuracy" else _cell(row.get(c), c)
             for c in columns] for row in rows]
    header = ["accuracy (%)" if c == "accuracy" else c for c in columns]
    align = "".join("r" if c in {"train_eps", "eval_eps", "steps", "accuracy", "n"} else "l"
                    for c in columns)
    return latex_tabular(header, body, align=align, caption=caption)
