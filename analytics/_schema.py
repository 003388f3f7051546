"""The analytics store's DuckDB schema and how rows travel into it (private to `store`).

Rows go from the studio database to DuckDB through a temporary CSV file written by Python's
`csv` module and parsed by DuckDB's `read_csv`: empty unquoted fields are NULL, except in
required text columns, so an optional name that is empty in the source is read as no name.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "2"
SAMPLE_EVERY = 16  # the latency sample keeps one call in this many (by a hash of its id)


def columns(spec: str) -> tuple[tuple[str, str], ...]:
    """("name", "TYPE") pairs from "name TYPE, ..."; "VARCHAR?" marks optional text."""
    items = re.split(r",\s*(?![^(]*\))", spec.strip())
    return tuple((name, kind) for name, kind in (item.split() for item in items))


def ddl(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name} {kind.rstrip('?')}" for name, kind in columns)


# The agreed `usage_events` schema, and the approvals with their run's graph and starter.
EVENT_COLUMNS = columns(
    "event_id BIGINT, workspace_id VARCHAR, run_id VARCHAR, graph_id VARCHAR,"
    " graph_version INTEGER, user_id VARCHAR, node_id VARCHAR, kind VARCHAR, attempt INTEGER,"
    " model VARCHAR?, provider VARCHAR?, tool VARCHAR?, input_tokens BIGINT,"
    " output_tokens BIGINT, cached_tokens BIGINT, usage_missing BOOLEAN,"
    " cost_usd DECIMAL(18,9), price_source VARCHAR, ttft_ms DOUBLE, latency_ms DOUBLE,"
    " outcome VARCHAR, cache_hit BOOLEAN, saved_usd DECIMAL(18,9), error_kind VARCHAR?,"
    " created_at TIMESTAMP"
)
APPROVAL_COLUMNS = columns(
    "approval_id VARCHAR, workspace_id VARCHAR, run_id VARCHAR, graph_id VARCHAR,"
    " user_id VARCHAR, node_id VARCHAR, kind VARCHAR, action VARCHAR, tier VARCHAR,"
    " status VARCHAR, decision VARCHAR?, decided_by VARCHAR?, created_at TIMESTAMP,"
    " decided_at TIMESTAMP"
)
# The daily rollup: every dashboard filter dimension is a key (the first ten columns), so
# filtered totals stay exact; the others are sums (`usage_missing`, `priced`: counts).
DAILY_COLUMNS = columns(
    "workspace_id VARCHAR, day DATE, graph_id VARCHAR, user_id VARCHAR, node_id VARCHAR,"
    " model VARCHAR, kind VARCHAR, outcome VARCHAR, cache_hit BOOLEAN, error_kind VARCHAR,"
    " calls BIGINT, usage_missing BIGINT, priced BIGINT, cost_usd DECIMAL(38,9),"
    " input_tokens BIGINT, output_tokens BIGINT, cached_tokens BIGINT,"
    " saved_usd DECIMAL(38,9), latency_ms DOUBLE"
)
DAILY_KEYS = ", ".join(name for name, _ in DAILY_COLUMNS[:10])
DAILY_SUMS = ", ".join(f"sum({name})" for name, _ in DAILY_COLUMNS[10:])
# A deterministic sample of the events (one in SAMPLE_EVERY, by a hash of the event id, so
# independent of latency and of any pattern in the ids) for percentiles of large groups.
SAMPLE_COLUMNS = (
    "workspace_id, created_at, graph_id, user_id, node_id, model, kind, outcome, cache_hit,"
    " latency_ms, ttft_ms"
)
TABLES = ("events", "approvals", "daily", "latency_sample")
DDL = f"""
CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS events ({ddl(EVENT_COLUMNS)});
CREATE TABLE IF NOT EXISTS approvals ({ddl(APPROVAL_COLUMNS)});
CREATE TABLE IF NOT EXISTS daily ({ddl(DAILY_COLUMNS)});
CREATE TABLE IF NOT EXISTS latency_sample AS SELECT {SAMPLE_COLUMNS} FROM events LIMIT 0;
"""  # noqa: S608 (constants)
SAMPLE = (
    f"INSERT INTO latency_sample SELECT {SAMPLE_COLUMNS} FROM events"  # noqa: S608
    " WHERE event_id > ? AND event_id <= ? AND hash(event_id) % ? = 0"
)
ROLLUP = """
INSERT INTO daily SELECT workspace_id, CAST(created_at AS DATE), graph_id, user_id, node_id,
    model, kind, outcome, cache_hit, error_kind, count(*), count(*) FILTER (usage_missing),
    count(cost_usd), sum(cost_usd), sum(input_tokens), sum(output_tokens), sum(cached_tokens),
    sum(saved_usd), sum(latency_ms)
FROM events WHERE event_id > ? AND event_id <= ? GROUP BY ALL
"""
APPROVAL_SOURCE = {"graph_id": "r.graph_id", "user_id": "r.started_by"}
KNOWN = "SELECT approval_id FROM approvals WHERE approval_id IN (SELECT unnest(?::VARCHAR[]))"
FORGET = "DELETE FROM approvals WHERE approval_id IN (SELECT unnest(?::VARCHAR[]))"


def source_select(
    columns: tuple[tuple[str, str], ...], prefix: str = "", where: dict[str, str] | None = None
) -> str:
    """Column list for the source query; an empty optional name is read as no name."""
    refs = [((where or {}).get(name, f"{prefix}{name}"), kind) for name, kind in columns]
    return ", ".join(f"NULLIF({ref}, '')" if kind.endswith("?") else ref for ref, kind in refs)


def csv_reader(path: str, columns: tuple[tuple[str, str], ...]) -> str:
    """`read_csv(...)` of a file written by `csv.writer`: empty unquoted = NULL, except in
    required text columns."""
    types = ", ".join(f"'{n}': '{t.rstrip('?')}'" for n, t in columns)
    keep = ", ".join(f"'{n}'" for n, t in columns if t == "VARCHAR")
    quoted = path.replace("'", "''")
    return (
        f"read_csv('{quoted}', header=false, delim=',', quote='\"', escape='\"',"
        f" new_line='\\r\\n', nullstr='', allow_quoted_nulls=false, auto_detect=false,"
        f" force_not_null=[{keep}], columns={{{types}}})"
    )


@contextmanager
def staged(rows: Sequence[Sequence[Any]], directory: str | None) -> Iterator[str]:
    """A temporary CSV file of `rows` (mode 0600, in the store's folder), removed after."""
    fd, path = tempfile.mkstemp(prefix=".analytics-", suffix=".csv", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\r\n").writerows(rows)
        yield path
    finally:
        Path(path).unlink(missing_ok=True)
