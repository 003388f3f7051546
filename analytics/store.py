"""The analytics store: a DuckDB copy of the usage events and approvals, loaded incrementally.

The studio database stays the source of truth; DuckDB only answers the dashboards.

- **The server's store** (`AnalyticsStore(engine, path)`): one DuckDB file in the data folder,
  owned by one process (DuckDB locks it: no other process can open it, not even read-only).
  It is a cache: deleted or outdated, it is rebuilt from the source.
- **A snapshot** (`AnalyticsStore.snapshot(engine, workspace_id, since=...)`): a private
  in-memory copy of one workspace's rows, for other processes — the `studio analytics` CLI
  works while a server holds the file, and never holds another workspace's rows.

`refresh()` loads events after the highest id loaded, in batches; each is one DuckDB
transaction appending the rows, their daily rollup rows and their share of the latency
sample (one call in `SAMPLE_EVERY`), so a crash mid-batch leaves
nothing and the next refresh resumes from the last committed id (no duplicates, no gaps).
Rows travel through a temporary CSV file that DuckDB parses (single-row inserts cost
milliseconds each). Approvals: new ones, and ones no longer pending, are replaced by id.
Reads (`fetch`) use a cursor each and see the last committed batch. Event ids must never be
reused; a source whose highest id falls below what was loaded makes the store start over.
"""

from __future__ import annotations

__all__ = ["AnalyticsStore", "AnalyticsUnavailable", "LoadReport"]

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import DateTime, Engine, bindparam, text

from analytics import _schema as sc
from components.errors import StudioError

log = logging.getLogger(__name__)

APPROVAL_MARGIN = timedelta(minutes=10)  # re-read approvals this much before the newest
_COMPACT_MIN_ROWS = 50_000


class AnalyticsUnavailable(StudioError):
    """The analytics store cannot be used (its file is held by another process, or closed)."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What one `refresh()` loaded; `behind` is True when it stopped at `max_rows`."""

    events: int
    approvals: int
    seconds: float
    behind: bool = False


class AnalyticsStore:
    """A DuckDB copy of the analytics rows (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        path: Path | None = None,
        *,
        workspace_id: str | None = None,
        since: datetime | None = None,
        batch_rows: int = 50_000,
        threads: int | None = None,
    ) -> None:
        self.engine = engine
        self.path = path
        self.workspace_id = workspace_id
        self.sample_every = sc.SAMPLE_EVERY  # latency percentiles of large groups: 1 in this
        self._since = since.astimezone(UTC).replace(tzinfo=None) if since else None  # UTC
        self._batch = batch_rows
        self._load_lock = threading.Lock()
        self._cursor_lock = threading.Lock()
        self._tmp_dir = str(path.parent) if path else None
        self._con = self._connect(path, threads)
        self._reader = self._con.cursor()
        self._closed = False
        self._prepare()

    @classmethod
    def snapshot(
        cls, engine: Engine, workspace_id: str, *, since: datetime | None = None
    ) -> AnalyticsStore:
        """A private in-memory store of one workspace's rows (from `since` on)."""
        return cls(engine, None, workspace_id=workspace_id, since=since)

    @staticmethod
    def _connect(path: Path | None, threads: int | None) -> duckdb.DuckDBPyConnection:
        config: dict[str, str | bool | int | float | list[str]] = {}
        if threads:
            config["threads"] = threads
        if path is None:
            return duckdb.connect(":memory:", config=config)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(path), config=config)
        except duckdb.IOException as exc:
            raise AnalyticsUnavailable(
                f"the analytics file {str(path)!r} is held by another process ({exc}); "
                "only the studio server opens it — other processes use a snapshot"
            ) from None

    def _prepare(self) -> None:
        con = self._con
        con.execute(sc.DDL)
        found = con.execute("SELECT value FROM store_meta WHERE key = 'schema'").fetchall()
        if found and found[0][0] != sc.SCHEMA_VERSION:
            log.warning("analytics store schema %s is outdated; rebuilding it", found[0][0])
            con.execute("".join(f"DROP TABLE IF EXISTS {t};" for t in sc.TABLES) + sc.DDL)
            con.execute("DELETE FROM store_meta")
            found = []
        if not found:
            con.execute("INSERT INTO store_meta VALUES ('schema', ?)", [sc.SCHEMA_VERSION])
        self._events_wm = int(self._scalar("SELECT coalesce(max(event_id), 0) FROM events"))
        self._approvals_wm: datetime | None = self._scalar("SELECT max(created_at) FROM approvals")
        rollup = con.execute("SELECT value FROM store_meta WHERE key = 'rollup_rows'").fetchall()
        self._rollup_rows = int(rollup[0][0]) if rollup else 0

    def _set_meta(self, key: str, value: object) -> None:
        self._con.execute("DELETE FROM store_meta WHERE key = ?", [key])
        self._con.execute("INSERT INTO store_meta VALUES (?, ?)", [key, str(value)])

    def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only query, run on its own cursor (safe from any thread)."""
        with self._cursor_lock:
            if self._closed:
                raise AnalyticsUnavailable("the analytics store is closed")
            cursor = self._reader.cursor()
        try:
            return cursor.execute(sql, list(params)).fetchall()
        finally:
            cursor.close()

    def refresh(self, *, wait: bool = True, max_rows: int | None = None) -> LoadReport | None:
        """Load new events and approvals; None when another refresh is running and `wait`
        is False. Stops after about `max_rows` events (then `behind` is True)."""
        if not self._load_lock.acquire(blocking=wait):
            return None
        try:
            started = time.perf_counter()
            events, behind = self._load_events(max_rows)
            approvals = self._load_approvals()
            if self._rollup_rows >= _COMPACT_MIN_ROWS:
                self._compact()
            return LoadReport(events, approvals, time.perf_counter() - started, behind)
        finally:
            self._load_lock.release()

    def _load_events(self, max_rows: int | None) -> tuple[int, bool]:
        with self.engine.connect() as conn:
            query = text("SELECT coalesce(max(event_id), 0) FROM usage_events")
            newest = int(conn.execute(query).scalar_one())
        if newest < self._events_wm:
            log.warning("usage_events ids went back (%s < %s); reloading", newest, self._events_wm)
            self._start_over()
        loaded = 0
        for rows in self._event_batches(newest):
            self._append_events(rows)
            loaded += len(rows)
            if max_rows is not None and loaded >= max_rows and self._events_wm < newest:
                return loaded, True
        return loaded, False

    def _event_batches(self, newest: int) -> Iterator[Sequence[Sequence[Any]]]:
        """New events in batches: by ranges of the primary key for the whole studio; one
        streamed query for a one-workspace snapshot (per batch, the source would re-sort the
        workspace's index entries)."""
        where = ["event_id > :after"]
        params: dict[str, Any] = {"after": self._events_wm, "limit": self._batch}
        if self.workspace_id is not None:
            where.append("workspace_id = :ws")
            params["ws"] = self.workspace_id
        if self._since is not None:
            where.append("created_at >= :since")
            params["since"] = self._since
        sql = text(
            f"SELECT {sc.source_select(sc.EVENT_COLUMNS)} FROM usage_events"  # noqa: S608 (constants)
            f" WHERE {' AND '.join(where)} ORDER BY event_id"
            + (" LIMIT :limit" if self.workspace_id is None else "")
        )
        if self._since is not None:
            sql = sql.bindparams(bindparam("since", type_=DateTime()))
        if self.workspace_id is not None:
            with self.engine.connect() as conn:
                result = conn.execute(sql, params)
                while batch := result.fetchmany(self._batch):
                    yield batch
            return
        while self._events_wm < newest:
            with self.engine.connect() as conn:
                rows = conn.execute(sql, {**params, "after": self._events_wm}).fetchall()
            if not rows:
                return
            yield rows

    def _append_events(self, rows: Sequence[Sequence[Any]]) -> None:
        first, last = self._events_wm, int(rows[-1][0])
        with sc.staged(rows, self._tmp_dir) as path, self._transaction() as con:
            reader = sc.csv_reader(path, sc.EVENT_COLUMNS)
            con.execute(f"INSERT INTO events SELECT * FROM {reader}")  # noqa: S608 (a file)
            added = int(con.execute(sc.ROLLUP, [first, last]).fetchall()[0][0])
            con.execute(sc.SAMPLE, [first, last, self.sample_every])
            self._set_meta("rollup_rows", self._rollup_rows + added)
        self._events_wm, self._rollup_rows = last, self._rollup_rows + added

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction on the owner connection: all of it, or none of it."""
        self._con.begin()
        try:
            yield self._con
        except BaseException:
            self._con.rollback()
            raise
        self._con.commit()

    def _start_over(self) -> None:
        self._con.execute("".join(f"DELETE FROM {t};" for t in sc.TABLES))  # noqa: S608
        self._set_meta("rollup_rows", 0)
        self._events_wm, self._approvals_wm, self._rollup_rows = 0, None, 0

    def _compact(self) -> None:
        """Merge the rollup's per-batch partial rows into one row per key."""
        with self._transaction() as con:
            merged = f"SELECT {sc.DAILY_KEYS}, {sc.DAILY_SUMS} FROM daily GROUP BY ALL"  # noqa: S608
            con.execute(f"CREATE OR REPLACE TEMP TABLE daily_merged AS {merged}")
            con.execute("DELETE FROM daily")
            con.execute("INSERT INTO daily SELECT * FROM daily_merged")
            con.execute("DROP TABLE daily_merged")
            self._set_meta("rollup_rows", 0)
        self._rollup_rows = 0

    def _load_approvals(self) -> int:
        """Approvals new to the copy (re-reading `APPROVAL_MARGIN` before the newest, for
        rows committed late), and ones pending here that the source has closed or lost. A
        decision is a compare-and-set from pending, so no other row ever changes."""
        since = self._approvals_wm - APPROVAL_MARGIN if self._approvals_wm else self._since
        rows = self._fetch_approvals("a.created_at >= :since" if since else "1 = 1", since)
        known = self._con.execute(sc.KNOWN, [[r[0] for r in rows]]).fetchall() if rows else []
        rows = [r for r in rows if (r[0],) not in set(known)]
        ids = sorted(self._no_longer_pending())
        for at in range(0, len(ids), 500):
            chunk = {f"id{i}": value for i, value in enumerate(ids[at : at + 500])}
            where = f"a.approval_id IN ({', '.join(':' + k for k in chunk)})"
            rows.extend(self._fetch_approvals(where, None, chunk))
        if not rows and not ids:
            return 0
        with sc.staged(rows, self._tmp_dir) as path, self._transaction() as con:
            con.execute(sc.FORGET, [ids])  # the closed ones come back below; lost ones stay out
            reader = sc.csv_reader(path, sc.APPROVAL_COLUMNS)
            con.execute(f"INSERT INTO approvals SELECT * FROM {reader}")  # noqa: S608 (a file)
        self._approvals_wm = self._scalar("SELECT max(created_at) FROM approvals")
        return len(rows)

    def _fetch_approvals(
        self, condition: str, since: datetime | None, extra: dict[str, Any] | None = None
    ) -> list[Sequence[Any]]:
        params: dict[str, Any] = dict(extra or {})
        scope = ""
        if self.workspace_id is not None:
            scope, params["ws"] = " AND a.workspace_id = :ws", self.workspace_id
        columns = sc.source_select(sc.APPROVAL_COLUMNS, "a.", sc.APPROVAL_SOURCE)
        sql = text(
            f"SELECT {columns} FROM approvals a JOIN runs r"  # noqa: S608 (constants)
            f" ON r.run_id = a.run_id AND r.workspace_id = a.workspace_id"
            f" WHERE {condition}{scope}"
        )
        if since is not None:
            params["since"] = since
            sql = sql.bindparams(bindparam("since", type_=DateTime()))
        with self.engine.connect() as conn:
            return list(conn.execute(sql, params).fetchall())

    def _no_longer_pending(self) -> set[str]:
        """Ids pending in the copy that the source has decided (or otherwise closed) since."""
        rows = self._con.execute("SELECT approval_id FROM approvals WHERE status = 'pending'")
        here = {str(r[0]) for r in rows.fetchall()}
        if not here:
            return set()
        query = "SELECT approval_id FROM approvals WHERE status = 'pending'"
        with self.engine.connect() as conn:
            there = {str(v) for v in conn.execute(text(query)).scalars()}
        return here - there

    def _scalar(self, sql: str) -> Any:
        return self._con.execute(sql).fetchall()[0][0]

    def close(self) -> None:
        with self._load_lock, self._cursor_lock:
            if not self._closed:
                self._closed = True
                self._reader.close()
                self._con.close()

    def __enter__(self) -> AnalyticsStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
