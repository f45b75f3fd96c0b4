"""A report's tables as CSV, apart from I/O: one file per table, its key columns, its figure
columns and the number of distinct cases; a suppressed row keeps its keys, its figures and
case count are empty and ``suppressed`` is true (no renderer ever has the number)."""

from __future__ import annotations

import csv
import io

from .report import Table


def table_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*table.keys, *table.figures, "cases", "suppressed"])
    for row in table.rows:
        values = ["" if v is None else _number(v) for v in row.values]
        cases = "" if row.cases is None else str(row.cases)
        writer.writerow([*row.key, *values, cases, "true" if row.suppressed else "false"])
    return out.getvalue()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
