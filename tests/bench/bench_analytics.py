"""Analytics at scale: generate step events, load them into DuckDB, time every dashboard query
warm, and the same question asked of SQLite in the same run.

    python -m tests.bench.bench_analytics [--events 10000000] [--days 90] [--repeat 5] [--write]

1. **Generate** `--events` usage events straight into the studio's SQLite `usage_events`
   table (real schema and indexes, created by the analytics migration) with one recursive
   CTE per million rows: 90% in one workspace (the one queried), 10% spread over nine
   others; runs of 10 steps (9 model calls, 1 tool call), 20 graphs, 50 users, 4 models,
   2% errors, 2% retries, 1% fallbacks, 4% cache hits, ~1% calls without usage, a latency
   tail. Plus 20,000 approvals (on their own runs) and three budgets.
2. **Ingest**: one `AnalyticsStore.refresh()` loads everything into a DuckDB file (events/s);
   then 1,000 new events (the steady state), and a refresh with nothing new.
3. **Queries**: each dashboard query over the whole range (whole UTC days), after one warm-up
   run, `--repeat` times (median and max). Goal: every median < 0.5 s.
4. **SQLite**: the same question over the raw SQLite table (what answering without DuckDB
   takes), once each — percentiles by `row_number()` windows, as SQLite has no quantiles —
   and the totals are checked against DuckDB's.

`--write` appends a section to tests/bench/RESULTS.md. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from analytics.db import migrate as migrate_analytics
from analytics.queries import Dashboards
from analytics.rows import Filters, Point
from analytics.store import AnalyticsStore
from graphs.db import make_engine
from graphs.db import migrate as migrate_graphs
from graphs.identity import Actor, LocalAuthorizer
from tests.bench import analytics_sql as sq
from tests.bench import reporting

GOAL_S = 0.5
RESULTS = Path(__file__).with_name("RESULTS.md")
COMMAND = "python -m tests.bench.bench_analytics"
WS = "ws-bench"
END = date(2026, 11, 26)


@dataclass(frozen=True, slots=True)
class Row:
    query: str
    rows: int
    median_s: float
    max_s: float
    sqlite_s: float | None
    agrees: str

    def cells(self) -> list[str]:
        ratio = f"{self.sqlite_s / self.median_s:,.0f}x" if self.sqlite_s else "n/a"
        sqlite = f"{self.sqlite_s:,.2f}" if self.sqlite_s is not None else "n/a"
        verdict = "✓" if self.median_s < GOAL_S else "✗"
        return [self.query, f"{self.rows:,}", f"{self.median_s:.3f}", f"{self.max_s:.3f}",
                verdict, sqlite, ratio, self.agrees]  # fmt: skip


def generate(engine: Engine, db: Path, events: int, days: int) -> float:
    """Events, approvals and budgets in the studio database; returns seconds taken."""
    started = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    start = datetime.combine(END - timedelta(days=days), datetime.min.time())
    step = days * 86400 / events
    for lo in range(0, events, 1_000_000):
        hi = min(events, lo + 1_000_000) - 1
        con.execute("BEGIN")
        con.execute(sq.GENERATE_EVENTS, {"lo": lo, "hi": hi, "t0": start.isoformat(" "),
                                          "step": step, "ws": WS})  # fmt: skip
        con.execute("COMMIT")
        print(f"  generated {hi + 1:,} events", file=sys.stderr)
    con.close()
    sq.add_approvals_and_budgets(engine, WS, start.replace(tzinfo=UTC), days * 86400)
    return time.perf_counter() - started


def timed(run: Callable[[], Any], repeat: int) -> tuple[Any, float, float]:
    result = run()  # warm-up
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
    return result, statistics.median(times), max(times)


def sqlite_once(db: Path, sql: str, params: dict[str, Any]) -> tuple[list[Any], float]:
    con = sqlite3.connect(db)
    try:
        began = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        return rows, time.perf_counter() - began
    finally:
        con.close()


def checks(name: str, result: list[Any], sqlite_rows: list[Any]) -> str:
    """Whether DuckDB's totals equal SQLite's (where the question has exact totals)."""
    agree = sq.AGREEMENT.get(name)
    if agree is None:
        return "n/a"
    return "yes" if agree(result, sqlite_rows) else "NO"


def bench_queries(
    dash: Dashboards, db: Path, days: int, repeat: int, with_sqlite: bool
) -> list[Row]:
    actor = Actor(WS, "analyst")
    end = datetime.combine(END, datetime.min.time(), UTC)
    whole = Filters(end - timedelta(days=days), end)  # every generated event
    partial = Filters(whole.end - timedelta(days=7, hours=10, minutes=23), whole.end)
    last_day = whole.end.date() - timedelta(days=1)
    cases: list[tuple[str, Callable[[], list[Any]], Filters]] = [
        ("cost by day x model x user x graph, every row", lambda: dash.cost(
            actor, whole, by=("day", "model", "user", "graph")), whole),
        ("cost table: top 500 of day x model x user x graph", lambda: dash.cost(
            actor, whole, by=("day", "model", "user", "graph"), top=500), whole),
        ("cost and tokens by day x model", lambda: dash.cost(actor, whole), whole),
        ("cost by day x model, 7 d from 13:37", lambda: dash.cost(actor, partial), partial),
        ("latency p50/p95/p99 by node", lambda: dash.latency(actor, whole, "node"), whole),
        ("latency p50/p95/p99 by model", lambda: dash.latency(actor, whole, "model"), whole),
        ("latency p50/p95/p99 by graph", lambda: dash.latency(actor, whole, "graph"), whole),
        ("latency and time to first token by model", lambda: dash.latency(
            actor, whole, "model", ttft=True), whole),
        ("errors and retries by node", lambda: dash.errors(actor, whole, "node"), whole),
        ("cache hit rate and savings by day", lambda: dash.cache(actor, whole), whole),
        ("budget burn-down", lambda: dash.budget_burn(actor, whole), whole),
        ("approvals by tier", lambda: dash.approvals(actor, whole), whole),
        ("approver workload", lambda: dash.approvers(actor, whole), whole),
        ("drill-down: runs behind a day's errors", lambda: dash.runs_behind(
            actor, whole, Point(day=last_day, outcome="error")), whole),
    ]  # fmt: skip
    rows = []
    for name, run, f in cases:
        result, median, worst = timed(run, repeat)
        sqlite_s, agrees = None, "n/a"
        if with_sqlite:
            sql = sq.SQLITE[name]
            month = f.end - timedelta(microseconds=1)
            params = {
                "ws": WS,
                "start": sq.text_time(f.start),
                "end": sq.text_time(f.end),
                "day": last_day.isoformat(),
                "week": sq.text_time(sq.week_start(f.end)),
                "month": month.strftime("%Y-%m-01"),
                "graph": sq.graph_id(0),
            }
            sqlite_rows, sqlite_s = sqlite_once(db, sql, params)
            agrees = checks(name, result, sqlite_rows)
            if name.startswith("latency"):
                every = max(r.sample_every for r in result)
                gap = sq.percentile_gap(result, sqlite_rows)
                how = f"1-in-{every} sample" if every > 1 else "exact"
                agrees += f"; {how}: p50-p99 within {gap:.2%} of SQLite's"
        rows.append(Row(name, len(result), median, worst, sqlite_s, agrees))
        print(f"  {rows[-1].cells()}", file=sys.stderr)
    return rows


def markdown(rows: list[Row]) -> str:
    head = [
        "dashboard query",
        "rows",
        "DuckDB median s",
        "max s",
        "< 0.5 s",
        "SQLite s",
        "SQLite / DuckDB",
        "totals agree",
    ]
    return reporting.markdown_table(
        head, "|---|---:|---:|---:|:-:|---:|---:|:-:|", (row.cells() for row in rows)
    )


def machine() -> str:
    return reporting.machine(("duckdb", "SQLAlchemy"), sqlite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per query")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite side")
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed)")
    parser.add_argument("--write", action="store_true", help=f"append results to {RESULTS}")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = Path(tmp) / "studio.db"
        engine = make_engine(f"sqlite:///{db}")
        migrate_graphs(engine)
        migrate_analytics(engine)
        generated = generate(engine, db, args.events, args.days)
        print(f"generated in {generated:.0f} s", file=sys.stderr)
        with AnalyticsStore(engine, Path(tmp) / "analytics.duckdb") as store:
            load = store.refresh()
            assert load is not None
            rate = load.events / load.seconds
            print(f"ingested {load.events:,} events in {load.seconds:.1f} s", file=sys.stderr)
            steady = sq.append_events(db, 1_000, WS)
            step = store.refresh()
            idle = store.refresh()
            assert step is not None and idle is not None and step.events == steady
            dash = Dashboards(store, LocalAuthorizer())
            rows = bench_queries(dash, db, args.days, args.repeat, not args.no_sqlite)
        engine.dispose()
        size_mb = {p.name: p.stat().st_size / 1e6 for p in Path(tmp).iterdir() if p.is_file()}
    worst = max(r.median_s for r in rows)
    verdict = "MEETS" if worst < GOAL_S else "MISSES"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## Analytics dashboards (DuckDB) — {stamp}",
        "",
        f"Command: `{COMMAND} --events {args.events} --days {args.days} --repeat {args.repeat}`  ",
        f"Machine: {machine()}  ",
        f"Workload: {args.events:,} step events over {args.days} days generated in SQLite in "
        f"{generated:.0f} s (90% in the queried workspace; runs of 10 steps, 20 graphs, "
        f"50 users, 4 models), 20,000 approvals, 3 budgets. Files: studio.db "
        f"{size_mb.get('studio.db', 0):,.0f} MB, analytics.duckdb "
        f"{size_mb.get('analytics.duckdb', 0):,.0f} MB. Whole benchmark "
        f"{time.perf_counter() - began:.0f} s.",
        "",
        f"Ingest (SQLite → DuckDB, `AnalyticsStore.refresh()`): {load.events:,} events in "
        f"{load.seconds:.1f} s = **{rate:,.0f} events/s**; steady state: {step.events:,} new "
        f"events in {step.seconds * 1000:.0f} ms; nothing new: {idle.seconds * 1000:.1f} ms.",
        "",
        markdown(rows),
        "",
        f"**Slowest dashboard query (median, warm): {worst:.3f} s** — goal < {GOAL_S} s: "
        f"{verdict}. Queries run over the whole range (whole UTC days) of the queried "
        f"workspace; SQLite ran each question once over the raw table, DuckDB "
        f"{args.repeat} times after a warm-up.",
    ])  # fmt: skip
    print(section)
    if args.write:
        reporting.append_section(section)
    return 0 if worst < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
