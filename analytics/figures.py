"""Plotly figures of the dashboard rows (the page shows them with `ui.plotly`; no NiceGUI here).

Every point carries its drill-down coordinates in `customdata` (a dict of `Point` fields);
`point_from_customdata()` turns a clicked point back into a `Point` for `runs_behind()`.
Unknown money is not drawn as zero: hover text counts the calls without a price.
"""

from __future__ import annotations

__all__ = [
    "approvals_figure",
    "approvers_figure",
    "budget_figure",
    "cache_figure",
    "cost_figure",
    "decision_time_figure",
    "errors_figure",
    "latency_figure",
    "point_from_customdata",
    "tokens_figure",
]

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go

from analytics.rows import (
    COLUMN,
    ApprovalRow,
    ApproverRow,
    BudgetBurnRow,
    CacheRow,
    CostRow,
    ErrorRow,
    Key,
    LatencyRow,
    Point,
)

_COST_FIELDS = ("day", "graph_id", "user_id", "model", "node_id")


def _num(value: Decimal | float | int | None) -> float | None:
    return None if value is None else float(value)


def _label(value: Key) -> str:
    return "(none)" if value is None else value.isoformat() if isinstance(value, date) else value


def _figure(title: str, x_title: str, y_title: str, traces: list[Any], **layout: Any) -> go.Figure:
    figure = go.Figure(data=traces)
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, legend_title_text="", **layout
    )
    if not traces:
        figure.add_annotation(text="no data in this range", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper")  # fmt: skip
    return figure


def _key_point(by: str, key: Key, source: str = "usage") -> dict[str, Any]:
    field = "day" if by == "day" else COLUMN[by]
    return {"source": source, field: _label(key) if key is not None else None}


def point_from_customdata(data: Mapping[str, Any]) -> Point:
    """The `Point` behind a clicked point (its `customdata`)."""
    values = {k: v for k, v in data.items() if k != "source" and v is not None}
    if "day" in values:
        values["day"] = date.fromisoformat(str(values["day"]))
    if data.get("source") == "approvals":
        return Point("approvals", **values)
    return Point("usage", **values)


def cost_figure(rows: Sequence[CostRow], color: str = "model") -> go.Figure:
    """Stacked cost per day, one colour per `color` value (model, user_id, graph_id...)."""
    field = COLUMN.get(color, color)
    groups: dict[Any, list[CostRow]] = defaultdict(list)
    for row in rows:
        groups[getattr(row, field)].append(row)
    traces = [
        go.Bar(
            name=_label(name),
            x=[_label(r.day) for r in group],
            y=[_num(r.cost_usd) for r in group],
            customdata=[{f: _plain(getattr(r, f)) for f in _COST_FIELDS} for r in group],
            hovertext=[
                f"{r.calls} calls, {r.calls - r.priced_calls} without a price" for r in group
            ],
        )
        for name, group in groups.items()
    ]
    return _figure("Cost", "day", "USD", traces, barmode="stack")


def tokens_figure(rows: Sequence[CostRow]) -> go.Figure:
    """Input, output and cached tokens per day (calls without usage are counted aside)."""
    days: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        totals = days[row.day]
        for n, value in enumerate((row.input_tokens, row.output_tokens, row.cached_tokens)):
            totals[n] += value or 0
        totals[3] += row.usage_missing_calls
    x = [_label(d) for d in days]
    missing = [f"{t[3]} calls without usage" for t in days.values()]
    traces = [
        go.Bar(name=name, x=x, y=[t[n] for t in days.values()], hovertext=missing,
               customdata=[_key_point("day", d) for d in days])
        for n, name in enumerate(("input", "output", "cached"))
    ]  # fmt: skip
    return _figure("Tokens", "day", "tokens", traces, barmode="group")


def _bars(
    rows: Sequence[Any], by: str, series: Mapping[str, Callable[[Any], Any]], source: str = "usage"
) -> list[Any]:
    x = [_label(r.key) for r in rows]
    data = [_key_point(by, r.key, source) for r in rows]
    return [
        go.Bar(name=name, x=x, y=[value(r) for r in rows], customdata=data)
        for name, value in series.items()
    ]


def latency_figure(rows: Sequence[LatencyRow], by: str = "node") -> go.Figure:
    series = {"p50": lambda r: r.p50_ms, "p95": lambda r: r.p95_ms, "p99": lambda r: r.p99_ms}
    return _figure("Latency", by, "ms", _bars(rows, by, series) if rows else [], barmode="group")


def errors_figure(rows: Sequence[ErrorRow], by: str = "node") -> go.Figure:
    series = {
        "error rate": lambda r: 100 * (r.error_rate or 0),
        "retry rate": lambda r: 100 * (r.retry_rate or 0),
    }
    traces = _bars(rows, by, series) if rows else []
    return _figure("Errors and retries", by, "% of calls", traces, barmode="group")


def cache_figure(rows: Sequence[CacheRow], by: str = "day") -> go.Figure:
    traces = _bars(rows, by, {"saved USD": lambda r: _num(r.saved_usd)}) if rows else []
    if rows:
        traces.append(go.Scatter(name="hit rate %", x=[_label(r.key) for r in rows],
                                 y=[100 * (r.hit_rate or 0) for r in rows], yaxis="y2",
                                 customdata=[_key_point(by, r.key) for r in rows]))  # fmt: skip
    layout = {"yaxis2": {"title": "hit rate %", "overlaying": "y", "side": "right"}}
    return _figure("Response cache", by, "USD saved", traces, **layout)


def budget_figure(rows: Sequence[BudgetBurnRow]) -> go.Figure:
    """Money left per budget (and subject) over its current period."""
    lines: dict[tuple[str, str], list[BudgetBurnRow]] = defaultdict(list)
    for row in rows:
        lines[(row.budget_id, row.subject_id)].append(row)
    traces = []
    for (_, subject), series in lines.items():
        first = series[0]
        column = {"user": "user_id", "graph": "graph_id"}.get(first.scope)
        point = {"source": "usage", **({column: subject} if column else {})}
        traces.append(go.Scatter(
            name=f"{first.scope} {subject} ({first.period}, ${first.amount_usd})",
            x=[r.day.isoformat() for r in series], y=[_num(r.remaining_usd) for r in series],
            customdata=[{**point, "day": r.day.isoformat()} for r in series], mode="lines+markers",
        ))  # fmt: skip
    return _figure("Budget burn-down", "day", "USD left", traces)


def approvals_figure(rows: Sequence[ApprovalRow], by: str = "tier") -> go.Figure:
    names = ("approved", "edited", "rejected", "responded", "expired", "cancelled", "pending")
    series = {name: (lambda r, n=name: getattr(r, n)) for name in names}
    traces = _bars(rows, by, series, "approvals") if rows else []
    return _figure("Approvals", by, "approvals", traces, barmode="stack")


def decision_time_figure(rows: Sequence[ApprovalRow], by: str = "tier") -> go.Figure:
    """Time to decision (p50 and p95 seconds) per group of approvals."""
    series = {"p50": lambda r: r.decision_p50_s, "p95": lambda r: r.decision_p95_s}
    traces = _bars(rows, by, series, "approvals") if rows else []
    return _figure("Time to decision", by, "seconds", traces, barmode="group")


def approvers_figure(rows: Sequence[ApproverRow]) -> go.Figure:
    x = [r.decided_by for r in rows]
    data = [{"source": "approvals", "decided_by": r.decided_by} for r in rows]
    traces = [
        go.Bar(name=name, x=x, y=[getattr(r, name) for r in rows], customdata=data)
        for name in ("approved", "edited", "rejected", "responded")
    ] if rows else []  # fmt: skip
    return _figure("Approver workload", "approver", "decisions", traces, barmode="stack")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
