"""A report table as the page shows it (pure): headings, then one line per row with each key
written as a label and each figure formatted, a suppressed figure as a word, never a number.

Every chart is drawn from the same table (charts.py), and the table is always on the page: a
reader without JavaScript, or with a screen reader, gets the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.evidence.report import Row, Table

from .i18n import Words, column_label, table_title


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    value: float | None = None  # the figure as the report has it (data-value on the page)
    suppressed: bool = False
    numeric: bool = False


@dataclass(frozen=True, slots=True)
class TableView:
    name: str
    title: str
    headings: tuple[str, ...]
    lines: tuple[tuple[Cell, ...], ...]
    suppressed_rows: int


def format_figure(words: Words, figure: str, value: float) -> str:
    if figure.endswith("_rate"):
        return words.percent(value)
    if "hours" in figure:
        return words.number(value, 1)
    if figure.endswith("_change"):
        return words.signed(value, 2)
    if float(value).is_integer():
        return words.number(value)
    return words.number(value, 2)


def suppressed_cell(words: Words) -> Cell:
    return Cell(words.gettext("suppressed"), suppressed=True, numeric=True)


def figure_cell(words: Words, figure: str, value: float | None) -> Cell:
    if value is None:
        return suppressed_cell(words)
    return Cell(format_figure(words, figure, value), value=value, numeric=True)


def shows_cases(table: Table) -> bool:
    """Whether a line ends with its case count: not where a figure is that count already."""
    return "cases" not in table.figures


def _line(words: Words, table: Table, row: Row) -> tuple[Cell, ...]:
    keys = tuple(Cell(words.term(k, v)) for k, v in zip(table.keys, row.key, strict=True))
    figures = tuple(
        figure_cell(words, f, v) for f, v in zip(table.figures, row.values, strict=True)
    )
    if not shows_cases(table):
        return (*keys, *figures)
    cases = (
        suppressed_cell(words)
        if row.cases is None
        else Cell(words.number(row.cases), value=row.cases, numeric=True)
    )
    return (*keys, *figures, cases)


def table_view(words: Words, table: Table) -> TableView:
    return TableView(
        name=table.name,
        title=table_title(words, table.name),
        headings=tuple(
            column_label(words, c)
            for c in (*table.keys, *table.figures, *(("cases",) if shows_cases(table) else ()))
        ),
        lines=tuple(_line(words, table, row) for row in table.rows),
        suppressed_rows=sum(1 for row in table.rows if row.suppressed),
    )
