"""Dashboard queries over the analytics store, for the dashboard page, the API and the CLI.

Every query takes the acting identity, asks the authorizer for ``analytics:read``, and binds
the actor's workspace as a parameter in every branch of its SQL — `Filters` carry no
workspace, so no filter value can widen a query to another tenant. SQL text is built only
from constant column names (`analytics._sql`); every value is a bound parameter (hence the
`S608` waivers). Rows are the frozen dataclasses of `analytics.rows`.

Totals (cost, tokens, calls, outcomes, savings) are exact: the daily rollup for the whole
UTC days of the range, raw events for the partial days at its ends. Time to decision is an
exact percentile. Latency percentiles are exact for groups of up to `EXACT_UP_TO` calls and
come from a deterministic 1-in-16 sample of the calls beyond (counts and means stay exact):
an exact quantile over millions of rows alone takes longer than a dashboard may.
Every method blocks (DuckDB work): call it off the event loop.
"""

from __future__ import annotations

__all__ = ["READ", "Dashboards"]

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, get_args

from sqlalchemy import select

from analytics import _sql as q
from analytics.budgets import ActorLike, Authorizer
from analytics.rows import (
    ApprovalDim,
    ApprovalRow,
    ApproverRow,
    BudgetBurnRow,
    CacheRow,
    CostRow,
    Dim,
    ErrorDim,
    ErrorRow,
    Filters,
    LatencyRow,
    Point,
    RunRef,
)
from analytics.store import AnalyticsStore, AnalyticsUnavailable
from analytics.tables import Budget
from components.errors import UserError

READ = "analytics:read"


class Dashboards:
    """The dashboard queries of one store, each authorized for the acting identity."""

    EXACT_UP_TO = 100_000  # calls in a group above which latency percentiles are sampled

    def __init__(self, store: AnalyticsStore, authorizer: Authorizer) -> None:
        self._store = store
        self._authorizer = authorizer

    def _workspace(self, actor: ActorLike) -> str:
        self._authorizer.require(actor, READ)
        held = self._store.workspace_id
        if held is not None and held != actor.workspace_id:
            raise AnalyticsUnavailable(f"this analytics snapshot holds workspace {held!r} only")
        return actor.workspace_id

    def cost(
        self,
        actor: ActorLike,
        f: Filters,
        by: Sequence[Dim] = ("day", "model"),
        *,
        top: int | None = None,
    ) -> list[CostRow]:
        """Model calls: cost and tokens, grouped by any of day, graph, user, model, node —
        in the order of the groups, or the `top` costliest groups first (a table's page)."""
        ws = self._workspace(actor)
        wrong = [dim for dim in by if dim not in get_args(Dim)]
        if wrong:
            raise UserError(f"cannot group cost by {wrong[0]!r}; use {', '.join(get_args(Dim))}")
        keys = [q.key(dim, "facts") for dim in by]
        sums = [q.total("calls"), q.total("priced"), q.total("usage_missing"), q.usd("cost_usd")]
        tokens = [q.total(f"{t}_tokens", zero=False) for t in ("input", "output", "cached")]
        head = ", ".join([*keys, *sums, *tokens])
        sql = q.Sql().facts(ws, f).add(f"SELECT {head} FROM facts WHERE kind = 'model'")  # noqa: S608
        if keys:
            order = ", ".join(f"{k} NULLS FIRST" for k in keys)
            sql.add(f" GROUP BY {', '.join(keys)} ORDER BY ")
            sql.add(f"sum(cost_usd) DESC NULLS LAST, {order}" if top else order)
        if top:
            sql.add(" LIMIT ?", top)
        where = [keys.index(q.COLUMNS[d]) if q.COLUMNS[d] in keys else None for d in q.COST_DIMS]
        out = []
        for row in sql.run(self._store):
            calls, priced, missing, cost, tokens_in, tokens_out, cached = row[len(keys) :]
            if calls:  # else no model call at all
                day, graph_id, user_id, model, node_id = (
                    None if at is None else row[at] for at in where
                )
                money = q.money(cost)
                out.append(CostRow(day, graph_id, user_id, model, node_id, calls, priced,
                                   missing, money, tokens_in, tokens_out, cached))  # fmt: skip
        return out

    def latency(
        self, actor: ActorLike, f: Filters, by: Dim = "node", *, ttft: bool = False
    ) -> list[LatencyRow]:
        """p50/p95/p99 and mean latency of the calls actually made (no cache hits, no budget
        refusals); `by="model"`: model calls only; with `ttft`, also the time to first token
        of streamed answers. Calls and means are exact (from the rollup); percentiles are
        exact for groups of up to `EXACT_UP_TO` calls, and come from the store's latency
        sample for larger ones (`LatencyRow.sample_every`)."""
        ws = self._workspace(actor)
        only = q.CALLED + (" AND kind = 'model'" if by == "model" else "")
        key = q.key(by, "facts")
        sql = (
            q.Sql()
            .facts(ws, f)
            .add(
                f"SELECT {key}, {q.total('calls')}, sum(latency_ms) FROM facts WHERE {only}"  # noqa: S608
            )
        )
        groups = {k: (n, sum_ms) for k, n, sum_ms in sql.group(key).run(self._store) if n}
        big = {k for k, (n, _) in groups.items() if n > self.EXACT_UP_TO}
        found: dict[Any, tuple[Any, Any, int]] = {}
        for table, keys, every in (
            ("events", set(groups) - big, 1),
            ("latency_sample", big, self._store.sample_every),
        ):
            if keys:
                narrow = keys if len(keys) < len(groups) else None
                found |= self._percentiles(ws, f, by, only, table, narrow, ttft, every)
        out = []
        for k, (n, sum_ms) in groups.items():
            (p50, p95, p99), (t50, t95), every = found.get(k, ((None,) * 3, (None,) * 2, 1))
            out.append(LatencyRow(k, n, p50, p95, p99, sum_ms / n, t50, t95, every))
        return out

    def _percentiles(
        self, ws: str, f: Filters, by: str, only: str, table: str, keys: set[Any] | None,
        ttft: bool, every: int,
    ) -> dict[Any, tuple[Any, Any, int]]:  # fmt: skip
        key = q.key(by, "raw")
        first = "quantile_cont(ttft_ms, [0.5, 0.95])" if ttft else "NULL"
        sql = q.Sql().add(
            f"SELECT {key}, quantile_cont(latency_ms, [0.5, 0.95, 0.99]), {first} FROM {table}"  # noqa: S608
        )
        sql.scope(ws, f).add(f" AND {only}")
        if keys is not None:  # only these groups (the others are answered from elsewhere)
            listed = [k for k in keys if k is not None]
            tests = [f"{key} IN (SELECT unnest(?))"] if listed else []
            tests += [f"{key} IS NULL"] if None in keys else []
            sql.add(f" AND ({' OR '.join(tests)})", *([listed] if listed else []))
        return {
            k: (lat, firsts or (None, None), every)
            for k, lat, firsts in sql.group(key).run(self._store)
        }

    def errors(self, actor: ActorLike, f: Filters, by: ErrorDim = "node") -> list[ErrorRow]:
        """Calls by outcome, with error and retry rates (of all calls and attempts)."""
        ws = self._workspace(actor)
        key = q.key(by, "facts")
        counts = ", ".join(q.total("calls", f"outcome = '{o}'") for o in q.OUTCOMES)
        sql = q.Sql().facts(ws, f).add(f"SELECT {key}, {q.total('calls')}, {counts} FROM facts")  # noqa: S608
        out = []
        for value, *numbers in sql.group(key).run(self._store):
            calls, ok, err, retry, fallback, hits, stopped, paused = map(int, numbers)
            out.append(ErrorRow(value, calls, ok, err, retry, fallback, hits, stopped, paused,
                                q.rate(err, calls), q.rate(retry, calls)))  # fmt: skip
        return out

    def cache(self, actor: ActorLike, f: Filters, by: Dim = "day") -> list[CacheRow]:
        """Model calls answered from the response cache, and the money they saved."""
        ws = self._workspace(actor)
        key = q.key(by, "facts")
        sql = (
            q.Sql()
            .facts(ws, f)
            .add(
                f"SELECT {key}, {q.total('calls')}, {q.total('calls', 'cache_hit')},"  # noqa: S608
                f" {q.usd('saved_usd')} FROM facts WHERE kind = 'model'"
            )
        )
        return [
            CacheRow(value, int(calls), int(hits), q.rate(int(hits), int(calls)), q.money(saved))
            for value, calls, hits, saved in sql.group(key).run(self._store)
        ]

    def approvals(
        self, actor: ActorLike, f: Filters, by: ApprovalDim = "tier"
    ) -> list[ApprovalRow]:
        """Approvals requested in the range: outcomes, decision rates, time to decision (s).
        `user_id` filters by who started the run; `model` does not apply to approvals."""
        ws = self._workspace(actor)
        key = q.key(by, "approvals")
        counts = ", ".join(f"count(*) FILTER (status = '{s}')" for s in q.STATUSES)
        wait = f"quantile_cont(epoch(decided_at - created_at), [0.5, 0.95]) FILTER ({q.DECIDED})"
        sql = q.Sql().add(f"SELECT {key}, count(*), {counts}, {wait} FROM approvals")  # noqa: S608
        out = []
        for value, *numbers, waits in _approval_scope(sql, ws, f).group(key).run(self._store):
            n, pending, ok, edited, rejected, responded, cancelled, expired = map(int, numbers)
            decided = ok + edited + rejected + responded
            p50, p95 = waits or (None, None)
            rate_ok, rate_edit = q.rate(ok, decided), q.rate(edited, decided)
            out.append(ApprovalRow(value, n, pending, ok, edited, rejected, responded,
                                   cancelled, expired, rate_ok, rate_edit,
                                   q.rate(rejected, decided), p50, p95))  # fmt: skip
        return out

    def approvers(self, actor: ActorLike, f: Filters) -> list[ApproverRow]:
        """Each approver's decisions on approvals requested in the range, busiest first."""
        ws = self._workspace(actor)
        seconds = "epoch(decided_at - created_at)"
        counts = ", ".join(f"count(*) FILTER (status = '{s}')" for s in q.STATUSES[1:5])
        sql = q.Sql().add(
            f"SELECT decided_by, count(*), {counts}, quantile_cont({seconds}, 0.5),"  # noqa: S608
            f" avg({seconds}) FROM approvals"
        )
        _approval_scope(sql, ws, f).add(f" AND {q.DECIDED} AND decided_by IS NOT NULL")
        sql.add(" GROUP BY decided_by ORDER BY count(*) DESC, decided_by")
        return [ApproverRow(*row) for row in sql.run(self._store)]

    def budget_burn(self, actor: ActorLike, f: Filters) -> list[BudgetBurnRow]:
        """Each workspace, user and graph budget in its period that holds `f.end`: spend per
        day from the period's start (or the budget's creation) to `f.end`. A '*' budget has
        one series per user or graph that spent. `f.graph_id` / `f.user_id` narrow which
        budgets and subjects are shown; the spend itself is never narrowed by model or node.
        Per-run budgets have no burn-down."""
        ws = self._workspace(actor)
        query = select(Budget).where(Budget.workspace_id == ws, Budget.scope.in_(q.SUBJECT))
        with self._store.engine.connect() as conn:
            budgets = list(conn.execute(query.order_by(Budget.created_at, Budget.budget_id)))
        out: list[BudgetBurnRow] = []
        for budget in budgets:
            out.extend(self._burn(ws, f, budget))
        return out

    def _burn(self, ws: str, f: Filters, budget: Any) -> list[BudgetBurnRow]:
        column = q.SUBJECT[budget.scope]
        narrowed = {"user_id": f.user_id, "graph_id": f.graph_id}.get(column)
        if budget.scope_id != "*" and column != "workspace_id":
            if narrowed not in (None, budget.scope_id):
                return []
            narrowed = budget.scope_id
        start, end = q.period(budget.period, f.end)
        start = max(start or budget.created_at, budget.created_at)
        end = min(end or f.end, f.end)
        if start >= end:
            return []
        window = Filters(start, end, **({column: narrowed} if narrowed else {}))
        subject = "NULL" if column == "workspace_id" else column
        sql = q.Sql().facts(ws, window)
        sums = f"{q.usd('cost_usd')}, {q.total('calls - priced')}"
        sql.add(f"SELECT day, {subject}, {sums} FROM facts")  # noqa: S608
        sql.add(" WHERE kind = 'model' GROUP BY ALL ORDER BY 2, 1")
        spent: dict[str, dict[date, tuple[Decimal, int]]] = defaultdict(dict)
        for day, who, cost, calls in sql.run(self._store):
            spent[who or ws][day] = (q.money(cost) or Decimal(0), int(calls))
        days = [q.naive(start).date() + timedelta(n) for n in range(q.span(start, end))]
        out = []
        for who, by_day in spent.items():
            total = Decimal(0)
            for day in days:
                cost, unpriced = by_day.get(day, (Decimal(0), 0))
                total += cost
                out.append(BudgetBurnRow(budget.budget_id, budget.scope, who, budget.period,
                                         budget.amount_usd, day, cost, total,
                                         budget.amount_usd - total, unpriced))  # fmt: skip
        return out

    def runs_behind(
        self, actor: ActorLike, f: Filters, point: Point, *, limit: int = 100
    ) -> list[RunRef]:
        """The runs whose rows make up `point` (within the filters), newest first."""
        ws = self._workspace(actor)
        usage = point.source == "usage"
        sql = q.Sql().add(
            "SELECT run_id, any_value(graph_id), any_value(user_id), count(*),"  # noqa: S608
            f" {q.usd('cost_usd') if usage else 'NULL'}, min(created_at), max(created_at)"
            f" FROM {'events' if usage else 'approvals'}"
        )
        (sql.scope(ws, f) if usage else _approval_scope(sql, ws, f))
        for column, value in point.conditions():
            if column == "day" and isinstance(value, date):
                start = q.midnight(value)
                sql.add(" AND created_at >= ? AND created_at < ?", start, start + timedelta(1))
            else:
                sql.add(f" AND {column} = ?", value)
        sql.add(" GROUP BY run_id ORDER BY max(created_at) DESC, run_id LIMIT ?", limit)
        return [
            RunRef(run_id, graph_id, user_id, int(n), q.money(cost), first, last)
            for run_id, graph_id, user_id, n, cost, first, last in sql.run(self._store)
        ]


def _approval_scope(sql: q.Sql, workspace_id: str, f: Filters) -> q.Sql:
    dims = [(column, value) for column, value in f.dims() if column != "model"]
    return sql.where(workspace_id, q.naive(f.start), q.naive(f.end), dims)
