"""Writes on a path every run takes (its row, its end, its events, its usage records):
a statement compiled once and run on the driver's cursor (`DriverStatement`) through one
connection kept for them (`KeptConnection`). Shared by `graphs` and `analytics`."""

from __future__ import annotations

__all__ = ["DriverStatement", "KeptConnection"]

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import ClauseElement, Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

log = logging.getLogger(__name__)


class DriverStatement:
    """A Core statement compiled once for one dialect and executed as that SQL on the
    connection's driver cursor (in the connection's transaction): for the few statements
    every run executes (its row's INSERT and final UPDATE, its events' and usage records'
    INSERTs).

    Core's per-execution work (parameter processing, result metadata) cost ~0.25 ms a
    statement where a run executes it, after LangGraph's steps have left the CPU caches
    cold, and `exec_driver_sql` still ~0.07 ms: several times the statement itself
    (tests/bench/RESULTS.md, runtime). Values still pass through each parameter type's
    bind processor and returned columns through their types' result processors, so they
    are stored and read exactly as Core would. Values the statement holds
    (`.values(attempts=0)`) are sent as bound. No expanding IN: its SQL is made per
    execution.
    """

    def __init__(
        self,
        statement: ClauseElement,
        dialect: Dialect,
        *,
        keys: Sequence[str] | None = None,
        returning: Sequence[ColumnElement[Any]] = (),
    ) -> None:
        compiled = cast(
            SQLCompiler,
            statement.compile(dialect=dialect, column_keys=list(keys) if keys else None),
        )
        if compiled.post_compile_params:
            raise ValueError("a DriverStatement cannot hold an expanding IN")
        self.sql = str(compiled)
        self._positional = compiled.positional
        binds = compiled.binds
        if compiled.positional:
            self._names = list(compiled.positiontup or ())
        else:
            self._names = list(dict.fromkeys(compiled.bind_names.values()))
        self._own = {name: binds[name].value for name in self._names if not binds[name].required}
        self._convert = [
            (index, convert)
            for index, name in enumerate(self._names)
            if (convert := binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        ]
        self._dialect = dialect
        self._returning = [
            (str(column.key), column.type.dialect_impl(dialect)) for column in returning
        ]
        # result processors by the driver's type codes (as Core picks them; sqlite3: None)
        self._readers: dict[tuple[Any, ...], list[Any]] = {}

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for `values`, by bind name: every parameter the statement
        leaves open is required (KeyError), its own values are sent as they are."""
        own = self._own
        row = [own[name] if name in own else values[name] for name in self._names]
        for index, convert in self._convert:
            row[index] = convert(row[index])
        return tuple(row) if self._positional else dict(zip(self._names, row, strict=True))

    def execute(
        self, conn: Connection, values: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        """Execute once on the connection's own driver cursor, in its transaction: the rows
        it changed and, with RETURNING, the first row returned (columns converted by their
        types; None and 0 when there is none). For statements that touch one row."""
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self.sql, self.params(values))
            if not self._returning:
                return cursor.rowcount, None
            row = cursor.fetchone()
            codes = tuple(column[1] for column in cursor.description or ())
        finally:
            cursor.close()
        if row is None:
            return 0, None
        readers = self._readers.get(codes)
        if readers is None:
            readers = self._readers[codes] = [
                impl.result_processor(self._dialect, code)
                for (_, impl), code in zip(self._returning, codes, strict=True)
            ]
        return 1, {
            key: read(value) if read else value
            for (key, _), read, value in zip(self._returning, readers, row, strict=True)
        }

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(self.sql, [self.params(row) for row in rows])  # type: ignore[arg-type]
        finally:
            cursor.close()


class KeptConnection:
    """One connection kept for a write path every run takes (its row's INSERT and final
    UPDATE, its events), used by one thread at a time: a pool check-out and check-in cost
    ~0.1 ms each time where a run makes them (cold caches), and SQLite lets one writer in at
    a time anyway. A transaction that fails drops the connection; the next one connects."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction on the kept connection (committed at the end of the block)."""
        with self._lock:
            if self._conn is None:
                self._conn = self._engine.connect()
            try:
                with self._conn.begin():
                    yield self._conn
            except BaseException:
                self._drop()
                raise

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing a kept connection failed", exc_info=True)
