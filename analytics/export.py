"""The table view and the exports of dashboard rows: text table, CSV and Parquet.

Exports take the rows a dashboard query returned (already authorized and scoped to the
actor's workspace), so an export holds exactly what the table shows. Parquet is written by
DuckDB's `COPY ... (FORMAT parquet)` from a private in-memory database, with typed columns
(money as DECIMAL(38,9), days as DATE). In CSV and in the text table an unknown value is
empty / "-", never 0.
"""

from __future__ import annotations

__all__ = ["columns", "table", "text_table", "to_csv", "to_parquet"]

import csv
import io
import tempfile
import types
import typing
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

_DUCK_TYPES: dict[Any, str] = {
    str: "VARCHAR",
    int: "BIGINT",
    float: "DOUBLE",
    bool: "BOOLEAN",
    Decimal: "DECIMAL(38,9)",
    date: "DATE",
    datetime: "TIMESTAMP",
}


def columns(row_type: type[Any]) -> list[str]:
    """The column names of a row type (its dataclass fields, in order)."""
    if not is_dataclass(row_type):
        raise TypeError(f"{row_type!r} is not a row type")
    return [f.name for f in fields(row_type)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")  # 0.000000001, not 1E-9
    return str(value)


def table(rows: Sequence[Any], row_type: type[Any]) -> tuple[list[str], list[list[str]]]:
    """(column names, cells as text) for a table view; unknown cells are empty."""
    names = columns(row_type)
    return names, [[_cell(getattr(row, name)) for name in names] for row in rows]


def text_table(rows: Sequence[Any], row_type: type[Any]) -> str:
    """Rows as an aligned plain-text table (the CLI's output); unknown cells show "-"."""
    names, cells = table(rows, row_type)
    if not cells:
        return "no rows"
    cells = [[cell or "-" for cell in line] for line in cells]
    widths = [max(len(name), *(len(line[n]) for line in cells)) for n, name in enumerate(names)]
    lines = [names, ["-" * width for width in widths], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def to_csv(rows: Sequence[Any], row_type: type[Any]) -> str:
    """CSV with a header line; unknown values are empty fields."""
    names, cells = table(rows, row_type)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(cells)
    return buffer.getvalue()


def _duck_type(annotation: Any) -> str:
    """The DuckDB type of a field: `X | None` is X; a mixed key (text or day) is text."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _DUCK_TYPES[options[0]] if len(options) == 1 else "VARCHAR"
    return _DUCK_TYPES.get(annotation, "VARCHAR")


def to_parquet(rows: Sequence[Any], row_type: type[Any]) -> bytes:
    """The rows as a Parquet file (bytes), written by DuckDB's COPY."""
    hints = typing.get_type_hints(row_type)
    names = columns(row_type)
    kinds = [_duck_type(hints[name]) for name in names]
    con = duckdb.connect(":memory:")
    try:
        spec = ", ".join(f'"{n}" {k}' for n, k in zip(names, kinds, strict=True))
        con.execute(f"CREATE TABLE export_rows ({spec})")
        appender = con.appender("export_rows")
        for row in rows:
            values = [getattr(row, name) for name in names]
            appender.append_row(*(_value(v, k) for v, k in zip(values, kinds, strict=True)))
        appender.flush()
        with tempfile.TemporaryDirectory(prefix="analytics-export-") as folder:
            target = Path(folder) / "rows.parquet"
            con.execute(f"COPY export_rows TO '{target}' (FORMAT parquet)")
            return target.read_bytes()
    finally:
        con.close()


def _value(value: Any, kind: str) -> Any:
    if kind == "VARCHAR" and isinstance(value, date | datetime):
        return value.isoformat()
    return value
