"""Flat result rows and their renderings: a terminal table, CSV, JSON, LaTeX and pandas.

One row per evaluation, with the keys ``contract.columns.COLUMNS`` (the terminal table and
LaTeX show ``TABLE_COLUMNS``, leaving out those empty in every row). Accuracy is a fraction in
[0, 1]; standard accuracy is the row with ``eval_eps`` 0 and ``attack`` "none". The derived
``ci_low``/``ci_high`` (the 95% Wilson interval of accuracy over n) are computed here, not
stored; the terminal table shows them as one "95% CI" column, LaTeX with ``ci=True``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from contract.columns import (
    COLUMNS,
    READ_COLUMNS,
    RESULT_COLUMNS,
    TABLE_COLUMNS,
    VARIED_DEFAULTS,
)
from service import jsonout
from service.analysis.stats import interval_columns
from service.store.repository import Store

if TYPE_CHECKING:
    import pandas as pd

CI_COLUMN = "95% CI"
"""The display column of ``ci_low``/``ci_high`` (in percent, as ``[45.20, 51.30]``), shown
right after ``accuracy``."""

_RIGHT = frozenset(column.name for column in RESULT_COLUMNS if column.right_aligned) | {CI_COLUMN}

TABLE_LIMIT = 100
"""Rows beyond which ``robustlab results`` summarises instead of drawing every row: rich lays a
table out at about 5 ms a row, so 10,000 rows would take most of a minute."""

SUMMARY_KEYS = ("experiment", "dataset", "split", "model", "eval_norm", "attack")


def fetch_rows(store: Store, *, experiment: str | None = None,
               run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The result rows with exactly the ``COLUMNS`` keys (read column-wise: a 10,000-row
    listing decodes no JSON), the derived ones computed from accuracy and n."""
    rows = store.results(experiment=experiment, run_ids=run_ids, columns=READ_COLUMNS)
    for row in rows:
        row.update(interval_columns(row["accuracy"], row["n"]))
    return rows


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


def _interval_cell(row: dict[str, Any]) -> str:
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None:
        return "-"
    return f"[{100 * low:.2f}, {100 * high:.2f}]"


TRAINING_COLUMNS = ("train_norm", "train_eps", "train_method")
"""Unknown for a checkpoint trained elsewhere (``train_eps`` null): shown as '?'."""


def _row_cell(row: dict[str, Any], column: str) -> str:
    if column == CI_COLUMN:
        return _interval_cell(row)
    if column in TRAINING_COLUMNS and "train_eps" in row and row["train_eps"] is None:
        return "?"
    return _cell(row.get(column), column)


def _with_interval(columns: list[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """``columns`` with ``CI_COLUMN`` after accuracy, when a row has an interval."""
    if "accuracy" not in columns or all(row.get("ci_low") is None for row in rows):
        return columns
    at = columns.index("accuracy") + 1
    return [*columns[:at], CI_COLUMN, *columns[at:]]


def _table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The table's columns less those empty in every row ('?', unknown training, is shown)."""
    return _with_interval(
        [c for c in TABLE_COLUMNS
         if any(_row_cell(row, c) not in ("-", "") for row in rows) and _varies(c, rows)],
        rows)


def _varies(column: str, rows: Sequence[dict[str, Any]]) -> bool:
    """False for a "varied" column (``VARIED_DEFAULTS``) at its default in every row."""
    return column not in VARIED_DEFAULTS or any(
        row.get(column) != VARIED_DEFAULTS[column] for row in rows)


def to_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    """A rich table, for a screenful of rows (see ``TABLE_LIMIT``; ``to_text`` for more)."""
    columns = _table_columns(rows)
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in _RIGHT else "left")
    for row in rows:
        table.add_row(*(escape(_row_cell(row, c)) for c in columns))  # variants: no markup
    return table


def to_text(rows: Sequence[dict[str, Any]], title: str | None = None) -> str:
    """The same columns as ``to_table`` as plain aligned text: 10,000 rows in well under 1 s."""
    columns = _table_columns(rows)
    cells = [[_row_cell(row, c) for c in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)])
              for i, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(width) if column in _RIGHT else value.ljust(width)
                         for value, width, column in zip(values, widths, columns, strict=True)
                         ).rstrip()

    lines = [title] if title else []
    lines += [line(columns), "  ".join("-" * width for width in widths)]
    lines += [line(values) for values in cells]
    return "\n".join(lines) + "\n"


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (experiment, dataset, split, model, threat model, attack): how many runs and
    rows, and the range of their accuracy. What ``results`` shows beyond ``TABLE_LIMIT``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in SUMMARY_KEYS), []).append(row)
    summary = []
    for key, members in groups.items():
        accuracies = [r["accuracy"] for r in members if r.get("accuracy") is not None]
        summary.append({
            **dict(zip(SUMMARY_KEYS, key, strict=True)),
            "runs": len({r["run_id"] for r in members}), "rows": len(members),
            "eps": ",".join(f"{e:g}" for e in sorted({r.get("eval_eps") or 0.0 for r in members})),
            "min": min(accuracies, default=None), "mean":
                sum(accuracies) / len(accuracies) if accuracies else None,
            "max": max(accuracies, default=None),
        })
    return summary


def summary_table(summary: Sequence[dict[str, Any]], *, shown: int, total: int) -> Table:
    """The summary as a rich table, titled with how many rows it stands for."""
    table = Table(title=f"{total:,} rows summarised ({len(summary):,} groups"
                  + (f", first {shown:,} shown" if shown < len(summary) else "") + ")",
                  header_style="bold", title_justify="left")
    columns = [k for k in SUMMARY_KEYS if any(g.get(k) not in (None, "") for g in summary)]
    for column in columns:
        table.add_column(column)
    for column in ("eval eps", "runs", "rows", "min acc", "mean acc", "max acc"):
        table.add_column(column, justify="right")
    for group in summary[:shown]:
        table.add_row(*(_cell(group.get(c), c) for c in columns), group["eps"],
                      str(group["runs"]), str(group["rows"]),
                      *(_cell(group[k], "accuracy") for k in ("min", "mean", "max")))
    return table


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_json(rows: Sequence[dict[str, Any]]) -> str:
    """Strict JSON: a NaN or infinite value is ``null`` (``service.jsonout``)."""
    return jsonout.dumps([{key: row.get(key) for key in COLUMNS} for row in rows])


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


def to_latex(rows: Sequence[dict[str, Any]], caption: str | None = None, *,
             ci: bool = False) -> str:
    """A booktabs table of the rows; ``ci`` adds the 95% Wilson interval after accuracy."""
    columns = [c for c in TABLE_COLUMNS if c not in {"run_id", "checks_passed"}
               and any(row.get(c) not in (None, "") for row in rows) and _varies(c, rows)]
    if ci:
        columns = _with_interval(columns, rows)
    body = [[_row_cell(row, c).replace("%", "") if c == "accuracy" else _row_cell(row, c)
             for c in columns] for row in rows]
    header = {"accuracy": "accuracy (%)", CI_COLUMN: "95% CI (%)"}
    align = "".join("r" if c in {"train_eps", "eval_eps", "steps", "accuracy", "n", CI_COLUMN}
                    else "l" for c in columns)
    header_row = [header.get(c, c) for c in columns]
    return latex_tabular(header_row, body, align=align, caption=caption)
