"""The result columns, defined once: every ``result_field`` of ``EvaluationRecord``, with the
run's id, experiment and kind in front, ``checks_passed`` behind, then the derived columns
(``ci_low``, ``ci_high``: computed from a row's accuracy and n when rows are built, never
stored).

The store's ``evaluations`` table, ``robustlab results`` (json, csv, table, latex),
``results_frame``, the report and the dashboard all read ``RESULT_COLUMNS``; a new result
field is one ``result_field`` on ``contract.records.EvaluationRecord``.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal

from contract.records import EvaluationRecord

ColumnType = Literal["str", "float", "int", "bool"]


@dataclass(frozen=True)
class ResultColumn:
    """One key of every result row."""

    name: str
    type: ColumnType
    doc: str
    source: Literal["run", "record", "derived"]
    """"run": read from the run (not stored per evaluation, except ``run_id``); "record": a
    column of the ``evaluations`` table, written from the record; "derived": computed from
    the row's other columns where rows are built (``service.results.fetch_rows``,
    ``service.store.queries.evaluations_frame``), with no database column."""
    nullable: bool = True
    length: int | None = None
    table: bool | Literal["varied"] = True
    """Shown in the terminal table and LaTeX (those empty in every row are left out);
    "varied": only when some row holds another value than ``default`` (``checkpoint`` is
    'final' in every row of a run that evaluated nothing else)."""
    default: Any = None
    """The record's default ("varied" columns compare with it)."""

    @property
    def right_aligned(self) -> bool:
        return self.type in ("float", "int") and self.name != "step_size"


def _record_columns() -> tuple[ResultColumn, ...]:
    columns = []
    for item in fields(EvaluationRecord):
        meta = item.metadata.get("column")
        if meta is None:
            continue
        nullable = "None" in str(item.type)
        default = None if item.default is MISSING else item.default
        columns.append(ResultColumn(item.name, meta["type"], meta["doc"], "record",
                                    nullable=nullable, length=meta["length"],
                                    table=meta["table"], default=default))
    return tuple(columns)


RESULT_COLUMNS: tuple[ResultColumn, ...] = (
    ResultColumn("run_id", "str", "the run that measured it", "run", nullable=False),
    ResultColumn("experiment", "str", "the spec's name", "run", nullable=False, table=False),
    ResultColumn("kind", "str", "the spec's kind", "run", nullable=False, table=False),
    *_record_columns(),
    ResultColumn("checks_passed", "bool", "every validity check passed; null when none ran",
                 "record"),
    ResultColumn("ci_low", "float", "lower end of the 95% Wilson score interval of accuracy "
                 "over n (derived, not stored)", "derived", table=False),
    ResultColumn("ci_high", "float", "upper end of the 95% Wilson score interval of accuracy "
                 "over n (derived, not stored)", "derived", table=False),
)
"""Every key of a result row, in order (a contract: scripts parse these)."""

COLUMNS: tuple[str, ...] = tuple(column.name for column in RESULT_COLUMNS)
TABLE_COLUMNS: tuple[str, ...] = tuple(column.name for column in RESULT_COLUMNS if column.table)
VARIED_DEFAULTS: dict[str, object] = {
    column.name: column.default for column in RESULT_COLUMNS if column.table == "varied"}
"""The table columns shown only when some row differs from their default."""
STORED_COLUMNS: tuple[ResultColumn, ...] = tuple(
    column for column in RESULT_COLUMNS if column.source == "record")
"""The result columns of the ``evaluations`` table (``run_id`` is its foreign key)."""
DERIVED_COLUMNS: tuple[ResultColumn, ...] = tuple(
    column for column in RESULT_COLUMNS if column.source == "derived")
"""The result columns computed from the others (the terminal table shows them as one "95% CI"
column, LaTeX with ``--ci``)."""
READ_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in RESULT_COLUMNS if column.source != "derived")
"""The keys of a result row that are read from the store (``COLUMNS`` less the derived)."""
