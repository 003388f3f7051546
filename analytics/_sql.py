"""SQL building for the dashboard queries (private): text and bound parameters together.

SQL text is built only from the constant column names here; every value is a bound
parameter (hence the `S608` waivers). `Sql.facts()` is the `facts` CTE the totals read: the
daily rollup for the whole UTC days of a range, raw events for the partial days at its ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

from analytics.rows import COLUMN, ApprovalDim, ErrorDim, Filters
from analytics.store import AnalyticsStore
from components.errors import UserError

CALLED = "NOT cache_hit AND outcome NOT IN ('cache_hit', 'budget_stopped', 'budget_paused')"
DECIDED = "status IN ('approved', 'edited', 'rejected', 'responded')"
OUTCOMES = ("ok", "error", "retry", "fallback", "cache_hit", "budget_stopped", "budget_paused")
STATUSES = ("pending", "approved", "edited", "rejected", "responded", "cancelled", "expired")
FACTS = (
    "graph_id, user_id, node_id, model, kind, outcome, cache_hit, error_kind, calls,"
    " usage_missing, priced, cost_usd, input_tokens, output_tokens, cached_tokens, saved_usd,"
    " latency_ms"
)
RAW_FACTS = (
    "CAST(created_at AS DATE) AS day, graph_id, user_id, node_id, model, kind, outcome,"
    " cache_hit, error_kind, 1 AS calls, CAST(usage_missing AS BIGINT) AS usage_missing,"
    " CAST(cost_usd IS NOT NULL AS BIGINT) AS priced, cost_usd, input_tokens, output_tokens,"
    " cached_tokens, saved_usd, latency_ms"
)
COST_DIMS = ("day", "graph", "user", "model", "node")
COLUMNS = {"day": "day", **COLUMN}
SUBJECT = {"workspace": "workspace_id", "user": "user_id", "graph": "graph_id"}
Dims = Sequence[tuple[str, str]]


def naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def key(by: str, table: Literal["facts", "raw", "approvals"]) -> str:
    """The SQL of a grouping dimension of `table` (a UserError for one it does not have)."""
    allowed = get_args(ApprovalDim) if table == "approvals" else get_args(ErrorDim)
    if by not in allowed:
        raise UserError(f"cannot group by {by!r}; use one of {', '.join(allowed)}")
    if by == "day":
        return "day" if table == "facts" else "CAST(created_at AS DATE)"
    return COLUMN[by]


def midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def total(column: str, where: str = "", *, zero: bool = True) -> str:
    """`sum(column)` as BIGINT (HUGEINT results are slow to fetch); 0 when there is nothing
    to sum, unless `zero` is False (a sum of unknown token counts stays unknown)."""
    total = f"sum({column})" + (f" FILTER ({where})" if where else "")
    return f"CAST({f'coalesce({total}, 0)' if zero else total} AS BIGINT)"


def usd(column: str) -> str:
    """`sum(column)` as text (exact, and DECIMAL(38) results are slow to fetch); NULL stays."""
    return f"CAST(sum({column}) AS VARCHAR)"


def money(value: str | Decimal | None) -> Decimal | None:
    """Exact, without trailing zeros or an exponent: 0.033, 0, 12 (not 0.033000000, 0E-9)."""
    if value is None:
        return None
    amount = Decimal(value)
    return (
        amount.quantize(Decimal(1)) if amount == amount.to_integral_value() else amount.normalize()
    )


class Sql:
    """SQL text and its parameters, built together: values are never spliced into text."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[object] = []

    def add(self, text: str, *params: object) -> Sql:
        self.parts.append(text)
        self.params.extend(params)
        return self

    def where(self, workspace_id: str, start: datetime, end: datetime, dims: Dims) -> Sql:
        """`workspace_id = ?` first, then the time range and the filter dimensions."""
        self.add(" WHERE workspace_id = ? AND created_at >= ? AND created_at < ?")
        self.params.extend((workspace_id, start, end))
        return self.dims(dims)

    def dims(self, dims: Dims) -> Sql:
        for column, value in dims:
            self.add(f" AND {column} = ?", value)
        return self

    def scope(self, workspace_id: str, f: Filters) -> Sql:
        return self.where(workspace_id, naive(f.start), naive(f.end), f.dims())

    def facts(self, workspace_id: str, f: Filters) -> Sql:
        """A `facts` CTE: rollup rows for the whole days, raw rows for the partial ones."""
        start, end = naive(f.start), naive(f.end)
        first = start.date() + timedelta(days=0 if start.time() == time() else 1)
        last = end.date()
        branches = []
        whole = first < last
        edges = [(start, midnight(first)), (midnight(last), end)] if whole else [(start, end)]
        for lo, hi in edges:
            if lo < hi:
                raw = Sql().add(f"SELECT {RAW_FACTS} FROM events")  # noqa: S608 (constants)
                branches.append(raw.where(workspace_id, lo, hi, f.dims()))
        if whole:
            rollup = Sql().add(f"SELECT day, {FACTS} FROM daily")  # noqa: S608 (constants)
            rollup.add(
                " WHERE workspace_id = ? AND day >= ? AND day < ?", workspace_id, first, last
            )
            branches.append(rollup.dims(f.dims()))
        self.add("WITH facts AS (")
        for n, branch in enumerate(branches):
            self.add(" UNION ALL " if n else "")
            self.parts += branch.parts
            self.params += branch.params
        return self.add(") ")

    def group(self, key: str) -> Sql:
        return self.add(f" GROUP BY {key} ORDER BY {key} NULLS FIRST")

    def run(self, store: AnalyticsStore) -> list[tuple[Any, ...]]:
        return store.fetch("".join(self.parts), self.params)


def period(period: str, end: datetime) -> tuple[datetime | None, datetime | None]:
    """The UTC period ('day', 'week', 'month'; 'total' is unbounded) holding `end`'s last
    instant."""
    day = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    starts = {"day": day, "week": day - timedelta(day.weekday()), "month": day.replace(day=1)}
    if period not in starts:
        return None, None
    first = starts[period]
    after = {"day": first + timedelta(1), "week": first + timedelta(7)}.get(period)
    after = after or (first + timedelta(32)).replace(day=1)  # the next month's first day
    return datetime.combine(first, time(), UTC), datetime.combine(after, time(), UTC)


def span(start: datetime, end: datetime) -> int:
    """How many UTC days [start, end) touches."""
    last = (naive(end) - timedelta(microseconds=1)).date()
    return (last - naive(start).date()).days + 1
