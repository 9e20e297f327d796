"""The result columns, defined once: every ``result_field`` of ``EvaluationRecord``, with the
run's id, experiment and kind in front and ``checks_passed`` behind.

The store's ``evaluations`` table, ``robustlab results`` (json, csv, table, latex),
``results_frame``, the report and the dashboard all read ``RESULT_COLUMNS``; a new result
field is one ``result_field`` on ``contract.records.EvaluationRecord``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from contract.records import EvaluationRecord

ColumnType = Literal["str", "float", "int", "bool"]


@dataclass(frozen=True)
class ResultColumn:
    """One key of every result row."""

    name: str
    type: ColumnType
    doc: str
    source: Literal["run", "record"]
    """"run": read from the run (not stored per evaluation, except ``run_id``); "record": a
    column of the ``evaluations`` table, written from the record."""
    nullable: bool = True
    length: int | None = None
    table: bool = True
    """Shown in the terminal table and LaTeX (those empty in every row are left out)."""

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
        columns.append(ResultColumn(item.name, meta["type"], meta["doc"], "record",
                                    nullable=nullable, length=meta["length"],
                                    table=meta["table"]))
    return tuple(columns)


RESULT_COLUMNS: tuple[ResultColumn, ...] = (
    ResultColumn("run_id", "str", "the run that measured it", "run", nullable=False),
    ResultColumn("experiment", "str", "the spec's name", "run", nullable=False, table=False),
    ResultColumn("kind", "str", "the spec's kind", "run", nullable=False, table=False),
    *_record_columns(),
    ResultColumn("checks_passed", "bool", "every validity check passed; null when none ran",
                 "record"),
)
"""Every key of a result row, in order (a contract: scripts parse these)."""

COLUMNS: tuple[str, ...] = tuple(column.name for column in RESULT_COLUMNS)
TABLE_COLUMNS: tuple[str, ...] = tuple(column.name for column in RESULT_COLUMNS if column.table)
STORED_COLUMNS: tuple[ResultColumn, ...] = tuple(
    column for column in RESULT_COLUMNS if column.source == "record")
"""The result columns of the ``evaluations`` table (``run_id`` is its foreign key)."""
