"""Data and SQLite questions for `bench_analytics`: the event generator (one recursive CTE),
approvals and budgets, each dashboard question asked of SQLite directly, and the checks that
DuckDB's answers carry the same totals."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from analytics.tables import Budget
from graphs.tables import Approval, Graph, GraphVersion, Run

GRAPH = "printf('%08x-6a7b-4c8d-9e0f-%012x', {0}, {0})"
USER = "printf('%08x-1111-4222-8333-%012x', {0}, {0})"
GENERATE_EVENTS = f"""
INSERT INTO usage_events (event_id, workspace_id, run_id, graph_id, graph_version, user_id,
    node_id, kind, attempt, model, provider, tool, input_tokens, output_tokens, cached_tokens,
    usage_missing, cost_usd, price_source, ttft_ms, latency_ms, outcome, cache_hit, saved_usd,
    error_kind, created_at)
WITH RECURSIVE seq(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM seq WHERE i < :hi),
e AS (SELECT i, i / 10 AS run, (i / 10) % 20 AS g, i % 10 AS n,
             (i * 2654435761) % 1000003 AS r FROM seq),
f AS (SELECT *, n = 9 AS tool, n <> 9 AND r % 97 = 0 AS missing,
             200 + r % 3000 AS tin, 20 + (r / 7) % 800 AS tout,
             CASE WHEN r % 1000 < 20 THEN 'error' WHEN r % 1000 < 40 THEN 'retry'
                  WHEN r % 1000 < 50 THEN 'fallback'
                  WHEN r % 1000 < 90 AND n <> 9 THEN 'cache_hit' ELSE 'ok' END AS outcome
      FROM e)
SELECT i + 1,
    CASE WHEN run % 10 = 0 THEN 'ws-other-' || (run % 9) ELSE :ws END,
    printf('%08x-0000-4000-8000-%012x', run, run), {GRAPH.format("g")}, 1,
    {USER.format("(run * 7) % 50")}, 'node-' || n,
    CASE WHEN tool THEN 'tool' ELSE 'model' END, 1,
    CASE WHEN tool THEN NULL WHEN (g + n) % 4 = 0 THEN 'gpt-4.1'
         WHEN (g + n) % 4 = 1 THEN 'gpt-4.1-mini' WHEN (g + n) % 4 = 2 THEN 'claude-sonnet-4'
         ELSE 'llama-3.1-70b' END,
    CASE WHEN tool THEN NULL ELSE 'openai' END, CASE WHEN tool THEN 'http' END,
    CASE WHEN tool OR missing THEN NULL WHEN outcome = 'cache_hit' THEN 0 ELSE tin END,
    CASE WHEN tool OR missing THEN NULL WHEN outcome = 'cache_hit' THEN 0 ELSE tout END,
    CASE WHEN tool OR missing THEN NULL WHEN outcome = 'cache_hit' OR r % 4 <> 0 THEN 0
         ELSE tin / 2 END,
    missing,
    CASE WHEN tool OR missing THEN NULL WHEN outcome = 'cache_hit' THEN 0
         ELSE (tin * 2.0 + tout * 8.0) / 1000000 END,
    CASE WHEN tool THEN 'unknown' WHEN outcome = 'cache_hit' THEN 'cache' ELSE 'genai-prices' END,
    CASE WHEN tool OR outcome = 'cache_hit' THEN NULL ELSE 80 + r % 900 END,
    CASE WHEN tool THEN 20 + r % 300 WHEN outcome = 'cache_hit' THEN 1 + r % 5
         ELSE 300 + r % 4000 + CASE WHEN r % 100 = 0 THEN 20000 ELSE 0 END END,
    outcome, outcome = 'cache_hit',
    CASE WHEN outcome = 'cache_hit' THEN (tin * 2.0 + tout * 8.0) / 1000000 END,
    CASE outcome WHEN 'error' THEN 'timeout' WHEN 'retry' THEN 'rate_limit' END,
    strftime('%Y-%m-%d %H:%M:%f', :t0, printf('+%.3f seconds', i * :step))
FROM f
"""


def graph_id(g: int) -> str:
    return f"{g:08x}-6a7b-4c8d-9e0f-{g:012x}"


def user_id(u: int) -> str:
    return f"{u:08x}-1111-4222-8333-{u:012x}"


def add_approvals_and_budgets(engine: Engine, ws: str, t0: datetime, span_s: int) -> None:
    """20 graphs, 20,000 runs with one approval each (70% approved, 10% edited, 10% rejected,
    5% pending, 5% cancelled; 8 approvers), and three budgets."""
    graphs = [{"graph_id": graph_id(g), "workspace_id": ws, "name": f"graph {g}",
               "created_by": "bench", "created_at": t0} for g in range(20)]  # fmt: skip
    versions = [{"version_id": f"v-{g['graph_id']}", "graph_id": g["graph_id"],
                 "workspace_id": ws, "number": 1, "document": {}, "document_hash": "",
                 "created_by": "bench", "created_at": t0} for g in graphs]  # fmt: skip
    runs: list[dict[str, Any]] = []
    approvals: list[dict[str, Any]] = []
    statuses = ["approved"] * 14 + ["edited"] * 2 + ["rejected"] * 2 + ["pending", "cancelled"]
    for k in range(20_000):
        run_id, created = f"a0000000-0000-4000-8000-{k:012x}", t0 + timedelta(
            seconds=k * span_s / 20_000)  # fmt: skip
        runs.append({"run_id": run_id, "workspace_id": ws, "graph_id": graph_id(k % 20),
                     "version_id": f"v-{graph_id(k % 20)}", "thread_id": f"t-{k}",
                     "status": "succeeded", "started_by": user_id(k % 50), "input": {},
                     "created_at": created})  # fmt: skip
        status = statuses[k % 20]
        decided = None if status == "pending" else created + timedelta(seconds=5 + k * 37 % 3600)
        approvals.append({"approval_id": f"ap-{k}", "workspace_id": ws, "run_id": run_id,
                          "node_id": f"node-{k % 10}", "tool_call_id": f"c{k}",
                          "interrupt_id": f"i{k}", "kind": "tool", "action": "issue_refund",
                          "args": {}, "args_hash": "", "tier": ("confirm", "admin")[k % 3 == 0],
                          "allowed": ["approve", "reject"], "status": status,
                          "decided_by": None if decided is None or status == "cancelled"
                          else f"approver-{k % 8}", "decided_at": decided,
                          "created_at": created})  # fmt: skip
    budgets = [("workspace", ws, "5000", "week"), ("user", "*", "50", "day"),
               ("graph", graph_id(0), "2000", "month")]  # fmt: skip
    with engine.begin() as conn:
        for table, rows in ((Graph, graphs), (GraphVersion, versions), (Run, runs),
                            (Approval, approvals)):  # fmt: skip
            conn.execute(insert(table), rows)
        conn.execute(insert(Budget), [
            {"budget_id": f"b-{n}", "workspace_id": ws, "scope": scope, "scope_id": scope_id,
             "amount_usd": Decimal(amount), "period": period, "action": "stop",
             "created_by": "bench", "created_at": t0.replace(tzinfo=UTC)}
            for n, (scope, scope_id, amount, period) in enumerate(budgets)
        ])  # fmt: skip


def append_events(db: Path, count: int, ws: str) -> int:
    """`count` more events (the steady state), right after the newest; returns `count`."""
    con = sqlite3.connect(db, isolation_level=None)
    first, newest = con.execute(
        "SELECT max(event_id), max(created_at) FROM usage_events"
    ).fetchone()
    t0 = datetime.fromisoformat(newest)
    con.execute("BEGIN")
    con.execute(
        GENERATE_EVENTS,
        {
            "lo": first,
            "hi": first + count - 1,
            "ws": ws,
            "step": 0.01,
            "t0": (t0 - timedelta(seconds=first * 0.01)).isoformat(" "),
        },
    )
    con.execute("COMMIT")  # fmt: skip
    con.close()
    return count


def text_time(value: datetime) -> str:
    """A UTC time as SQLite holds it (text)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def week_start(end: datetime) -> datetime:
    day = (end - timedelta(microseconds=1)).date()
    return datetime.combine(day - timedelta(days=day.weekday()), datetime.min.time(), UTC)


_WHERE = "workspace_id = :ws AND created_at >= :start AND created_at < :end"
_CALLED = "NOT cache_hit AND outcome NOT IN ('cache_hit', 'budget_stopped', 'budget_paused')"
_COST = ("count(*), count(cost_usd), sum(usage_missing), sum(cost_usd), sum(input_tokens),"
         " sum(output_tokens), sum(cached_tokens)")  # fmt: skip


def _percentiles(key: str, value: str, source: str) -> str:
    """Nearest-rank p50/p95/p99 per `key` with window functions (SQLite has no quantiles)."""
    ranks = ", ".join(f"max(CASE WHEN rn = 1 + CAST({q} * (n - 1) AS INT) THEN v END)"
                      for q in (0.5, 0.95, 0.99))  # fmt: skip
    return (f"WITH x AS (SELECT {key} AS k, {value} AS v, row_number() OVER (PARTITION BY {key}"
            f" ORDER BY {value}) AS rn, count(*) OVER (PARTITION BY {key}) AS n FROM {source})"
            f" SELECT k, n, {ranks}, avg(v) FROM x GROUP BY k, n ORDER BY k")  # fmt: skip


_LATENCY = f"usage_events WHERE {_WHERE} AND {_CALLED}"
_APPROVALS = f"approvals WHERE {_WHERE}"
_DECIDED = "status IN ('approved', 'edited', 'rejected', 'responded')"
_SECONDS = "(julianday(decided_at) - julianday(created_at)) * 86400"
_DAY = "substr(created_at, 1, 10)"
SQLITE: dict[str, str] = {
    "cost by day x model x user x graph, every row": f"SELECT {_DAY}, model, user_id,"
    f" graph_id, {_COST} FROM usage_events WHERE {_WHERE} AND kind = 'model'"
    " GROUP BY 1, 2, 3, 4",
    "cost and tokens by day x model": f"SELECT {_DAY}, model, {_COST} FROM usage_events"
    f" WHERE {_WHERE} AND kind = 'model' GROUP BY 1, 2",
    "latency p50/p95/p99 by node": _percentiles("node_id", "latency_ms", _LATENCY),
    "latency p50/p95/p99 by model": _percentiles(
        "model", "latency_ms", _LATENCY + " AND kind = 'model'"),
    "latency p50/p95/p99 by graph": _percentiles("graph_id", "latency_ms", _LATENCY),
    "errors and retries by node": "SELECT node_id, count(*), "
    + ", ".join(f"sum(outcome = '{o}')" for o in ("ok", "error", "retry", "fallback"))
    + f" FROM usage_events WHERE {_WHERE} GROUP BY 1",
    "cache hit rate and savings by day": f"SELECT {_DAY}, count(*), sum(cache_hit),"
    f" sum(saved_usd) FROM usage_events WHERE {_WHERE} AND kind = 'model' GROUP BY 1",
    "budget burn-down": f"SELECT {_DAY}, NULL, sum(cost_usd) FROM usage_events WHERE"
    " workspace_id = :ws AND created_at >= :week AND created_at < :end AND kind = 'model'"
    f" GROUP BY 1 UNION ALL SELECT {_DAY}, user_id, sum(cost_usd) FROM usage_events WHERE"
    " workspace_id = :ws AND created_at >= :day AND created_at < :end AND kind = 'model'"
    f" GROUP BY 1, 2 UNION ALL SELECT {_DAY}, graph_id, sum(cost_usd) FROM usage_events WHERE"
    " workspace_id = :ws AND graph_id = :graph AND created_at >= :month"
    " AND created_at < :end AND kind = 'model' GROUP BY 1, 2",
    "approvals by tier": "WITH c AS (SELECT tier, count(*) AS requested, "
    + ", ".join(f"sum(status = '{s}')" for s in ("pending", "approved", "edited", "rejected"))
    + f" FROM {_APPROVALS} GROUP BY 1), q AS ("
    + _percentiles("tier", _SECONDS, f"{_APPROVALS} AND {_DECIDED}").replace(" ORDER BY k", "")
    + ") SELECT * FROM c LEFT JOIN q ON q.k = c.tier ORDER BY c.tier",
    "approver workload": _percentiles(
        "decided_by", _SECONDS, f"{_APPROVALS} AND {_DECIDED} AND decided_by IS NOT NULL"),
    "drill-down: runs behind a day's errors": "SELECT run_id, count(*), sum(cost_usd),"
    f" min(created_at), max(created_at) FROM usage_events WHERE {_WHERE}"
    " AND created_at >= :day AND created_at < date(:day, '+1 day') AND outcome = 'error'"
    " GROUP BY run_id ORDER BY max(created_at) DESC, run_id LIMIT 100",
}  # fmt: skip
SQLITE["cost by day x model, 7 d from 13:37"] = SQLITE["cost and tokens by day x model"]
SQLITE["latency and time to first token by model"] = (
    f"SELECT * FROM ({SQLITE['latency p50/p95/p99 by model']}) UNION ALL SELECT * FROM ("
    + _percentiles("model", "ttft_ms", _LATENCY + " AND kind = 'model' AND ttft_ms IS NOT NULL")
    + ")"
)
SQLITE["cost table: top 500 of day x model x user x graph"] = (
    SQLITE["cost by day x model x user x graph, every row"] + " ORDER BY 8 DESC LIMIT 500"
)


def _close(a: Any, b: Any) -> bool:
    return abs(float(a or 0) - float(b or 0)) <= 1e-6 * max(1.0, abs(float(b or 0)))


def _cost_totals(result: list[Any], rows: list[Any]) -> bool:
    n = len(rows[0]) - 7
    calls = sum(r[n] for r in rows) == sum(r.calls for r in result)
    return calls and _close(sum(r.cost_usd or 0 for r in result), sum(r[n + 3] or 0 for r in rows))


def _keyed(pick: Callable[[Any], Any], sqlite_pick: Callable[[Any], Any]) -> Callable[..., bool]:
    def check(result: list[Any], rows: list[Any]) -> bool:
        return sorted(map(pick, result)) == sorted(map(sqlite_pick, rows))

    return check


AGREEMENT: dict[str, Callable[[list[Any], list[Any]], bool]] = {
    "cost by day x model x user x graph, every row": _cost_totals,
    "cost and tokens by day x model": _cost_totals,
    "cost by day x model, 7 d from 13:37": _cost_totals,
    "cost table: top 500 of day x model x user x graph": _cost_totals,
    "latency p50/p95/p99 by node": _keyed(lambda r: (r.key, r.calls), lambda r: (r[0], r[1])),
    "latency p50/p95/p99 by model": _keyed(lambda r: (r.key, r.calls), lambda r: (r[0], r[1])),
    "latency p50/p95/p99 by graph": _keyed(lambda r: (r.key, r.calls), lambda r: (r[0], r[1])),
    "latency and time to first token by model": lambda result, rows: sorted(
        (r.key, r.calls) for r in result
    ) == sorted((r[0], r[1]) for r in rows[: len(result)]),
    "errors and retries by node": _keyed(
        lambda r: (r.key, r.calls, r.errors, r.retries), lambda r: (r[0], r[1], r[3], r[4])),
    "cache hit rate and savings by day": _keyed(
        lambda r: (r.key.isoformat(), r.model_calls, r.cache_hits), lambda r: r[:3]),
    "approvals by tier": _keyed(lambda r: (r.key, r.requested, r.pending, r.approved),
                                lambda r: r[:4]),
    "approver workload": _keyed(lambda r: (r.decided_by, r.decisions), lambda r: (r[0], r[1])),
    "drill-down: runs behind a day's errors": _keyed(lambda r: r.run_id, lambda r: r[0]),
    "budget burn-down": lambda result, rows: _close(
        sum(r.spent_usd for r in result), sum(r[2] or 0 for r in rows)
    ),
}  # fmt: skip


def percentile_gap(result: list[Any], rows: list[Any]) -> float:
    """The largest relative gap between DuckDB's p50/p95/p99 (sampled for large groups) and
    SQLite's exact nearest-rank ones, over every group."""
    exact = {r[0]: r[2:5] for r in rows[: len(result)]}
    gaps = [
        abs(mine - theirs) / theirs
        for r in result
        for mine, theirs in zip((r.p50_ms, r.p95_ms, r.p99_ms), exact[r.key], strict=True)
        if theirs
    ]
    return max(gaps, default=0.0)
