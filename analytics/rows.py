"""The rows the dashboard queries return, their filters, and the points to drill down from.

Frozen dataclasses (tables, CSV and Parquet exports use their fields in order). Money is
`Decimal`; an unknown sum (no call of the group reported usage or had a price) is None,
never zero. Times are UTC; `Filters` takes timezone-aware datetimes and carries no
workspace: the server takes the workspace from the acting identity.
"""

from __future__ import annotations

__all__ = [
    "COLUMN",
    "ApprovalDim",
    "ApprovalRow",
    "ApproverRow",
    "BudgetBurnRow",
    "CacheRow",
    "CostRow",
    "Dim",
    "ErrorDim",
    "ErrorRow",
    "Filters",
    "Key",
    "LatencyRow",
    "Point",
    "RunRef",
]

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from components.errors import UserError

Dim = Literal["day", "graph", "user", "model", "node"]
ErrorDim = Literal["day", "graph", "user", "model", "node", "error_kind"]
ApprovalDim = Literal["day", "graph", "user", "node", "tier", "action"]
Key = str | date | None
COLUMN = {  # a grouping dimension → its column
    "graph": "graph_id",
    "user": "user_id",
    "model": "model",
    "node": "node_id",
    "error_kind": "error_kind",
    "tier": "tier",
    "action": "action",
}


@dataclass(frozen=True, slots=True)
class Filters:
    """What a dashboard shows: [start, end) in UTC (timezone-aware) and optional dimensions.
    There is deliberately no workspace here: the server takes it from the actor."""

    start: datetime
    end: datetime
    graph_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    node_id: str | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise UserError("the time range needs timezone-aware datetimes (UTC)")
        if self.start >= self.end:
            raise UserError(f"the time range is empty: {self.start} is not before {self.end}")

    @classmethod
    def last_days(cls, days: int = 30, *, now: datetime | None = None, **dims: str) -> Filters:
        """Whole UTC days: today and the `days - 1` before it."""
        if days < 1:
            raise UserError(f"days must be at least 1, not {days}")
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        end = datetime.combine(today + timedelta(days=1), time(), UTC)
        return cls(end - timedelta(days=days), end, **dims)

    def dims(self) -> list[tuple[str, str]]:
        """(column, value) of each dimension the filters narrow."""
        found = [("graph_id", self.graph_id), ("user_id", self.user_id)]
        found += [("model", self.model), ("node_id", self.node_id)]
        return [(column, value) for column, value in found if value is not None]


@dataclass(frozen=True, slots=True)
class CostRow:
    day: date | None
    graph_id: str | None
    user_id: str | None
    model: str | None
    node_id: str | None
    calls: int
    priced_calls: int
    usage_missing_calls: int
    cost_usd: Decimal | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """`calls` and `mean_ms` are exact. Percentiles are exact when `sample_every` is 1; a
    group of more calls than `Dashboards.EXACT_UP_TO` takes them from a deterministic sample
    of one call in `sample_every` (tens of thousands of calls at least)."""

    key: Key
    calls: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    sample_every: int = 1


@dataclass(frozen=True, slots=True)
class ErrorRow:
    key: Key
    calls: int
    ok: int
    errors: int
    retries: int
    fallbacks: int
    cache_hits: int
    budget_stopped: int
    budget_paused: int
    error_rate: float | None
    retry_rate: float | None


@dataclass(frozen=True, slots=True)
class CacheRow:
    key: Key
    model_calls: int
    cache_hits: int
    hit_rate: float | None
    saved_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    key: Key
    requested: int
    pending: int
    approved: int
    edited: int
    rejected: int
    responded: int
    cancelled: int
    expired: int
    approve_rate: float | None  # of decided ones
    edit_rate: float | None
    reject_rate: float | None
    decision_p50_s: float | None
    decision_p95_s: float | None


@dataclass(frozen=True, slots=True)
class ApproverRow:
    decided_by: str
    decisions: int
    approved: int
    edited: int
    rejected: int
    responded: int
    decision_p50_s: float | None
    decision_mean_s: float | None


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a figure, to drill down to the runs behind it. Every field that is set
    narrows the rows; `source` says whether they are usage events or approvals."""

    source: Literal["usage", "approvals"] = "usage"
    day: date | None = None
    graph_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    node_id: str | None = None
    outcome: str | None = None
    cache_hit: bool | None = None
    error_kind: str | None = None
    tier: str | None = None
    action: str | None = None
    status: str | None = None
    decided_by: str | None = None

    def __post_init__(self) -> None:
        allowed = _POINT_FIELDS[self.source]
        wrong = [
            n for n in _POINT_FIELDS["all"] if getattr(self, n) is not None and n not in allowed
        ]
        if wrong:
            raise UserError(f"{', '.join(wrong)} do not apply to {self.source} rows")

    @classmethod
    def at(cls, by: str, key: Key, source: Literal["usage", "approvals"] = "usage") -> Point:
        """The point of a row grouped `by` one dimension (for example `("node", "llm")`)."""
        if by == "day":
            if not isinstance(key, date):
                raise UserError(f"a day point needs a date, not {key!r}")
            return cls(source, day=key)
        if by not in COLUMN or (key is not None and not isinstance(key, str)):
            raise UserError(f"cannot drill down from {by!r} = {key!r}")
        return cls(source, **{COLUMN[by]: key})  # type: ignore[arg-type]

    def conditions(self) -> list[tuple[str, object]]:
        """(column, value) of each field that is set (`day` included)."""
        names = _POINT_FIELDS["all"]
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]


_POINT_FIELDS = {
    "all": ("day", "graph_id", "user_id", "model", "node_id", "outcome", "cache_hit",
            "error_kind", "tier", "action", "status", "decided_by"),
    "usage": ("day", "graph_id", "user_id", "model", "node_id", "outcome", "cache_hit",
              "error_kind"),
    "approvals": ("day", "graph_id", "user_id", "node_id", "tier", "action", "status",
                  "decided_by"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class BudgetBurnRow:
    """One day of a budget's current period: spend that day, so far, and what is left.
    `subject_id` is the user or graph a '*' budget is counted for (else its scope id)."""

    budget_id: str
    scope: str
    subject_id: str
    period: str
    amount_usd: Decimal
    day: date
    spent_usd: Decimal
    cumulative_usd: Decimal
    remaining_usd: Decimal
    unpriced_calls: int  # calls of unknown cost: not in the spend


@dataclass(frozen=True, slots=True)
class RunRef:
    run_id: str
    graph_id: str
    user_id: str
    rows: int
    cost_usd: Decimal | None
    first_at: datetime
    last_at: datetime
