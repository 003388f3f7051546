"""What the dashboard page shows, without NiceGUI: its charts (query, figures, row type),
the time range, the filter choices, the drill-down and the exports.

Every function here blocks (DuckDB and database work) and takes the acting identity: the
page calls them through `Page.act`, off the event loop. Each one asks `analytics:read`
first, and the queries bind the actor's workspace on the server (`analytics.queries`).
Figures travel to the browser as plain dicts; their `customdata` carries the drill-down
point, which comes back from the browser untrusted and is checked in `drill_down()`.
"""

from __future__ import annotations

__all__ = ["CHARTS", "PRESETS", "Ask", "Chart", "Choices", "Shown", "drill_down", "export",
           "load", "time_range", "usd"]  # fmt: skip

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go

from analytics import export as exports
from analytics import figures
from analytics.queries import Dashboards
from analytics.rows import (
    ApprovalRow,
    ApproverRow,
    BudgetBurnRow,
    CacheRow,
    CostRow,
    ErrorRow,
    Filters,
    LatencyRow,
    Point,
    RunRef,
)
from components.errors import Forbidden, NotFound, StudioError, UserError
from graphs.identity import Actor
from studio.context import Studio
from studio.web_analytics import WebAnalytics

PRESETS = {"24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days",
           "custom": "custom dates"}  # fmt: skip
DRILL_LIMIT = 50
_EVER = datetime(2000, 1, 1, tzinfo=UTC)
_NAMED = ("graph", "user")  # dimensions whose ids the figures show by name
Query = Callable[[Dashboards, Actor, Filters, Any], list[Any]]  # the last: a dimension


@dataclass(frozen=True, slots=True)
class Chart:
    label: str
    row_type: type[Any]
    query: Query
    figures: Callable[[list[Any], str], list[go.Figure]]
    by: tuple[str, ...] = ()  # the choices of the "by" control (the first is the default)
    about: str = ""


CHARTS: dict[str, Chart] = {
    "cost": Chart(
        "Cost", CostRow, lambda d, a, f, by: d.cost(a, f, by=("day", by)),
        lambda rows, by: [figures.cost_figure(rows, by), figures.tokens_figure(rows)],
        ("model", "user", "graph", "node"),
        "Cost of model calls per day (coloured by the choice above) and their tokens.",
    ),
    "latency": Chart(
        "Latency", LatencyRow, lambda d, a, f, by: d.latency(a, f, by=by),
        lambda rows, by: [figures.latency_figure(rows, by)],
        ("node", "model", "graph", "user", "day"),
        "p50, p95 and p99 latency of the calls made (cache hits and refused calls left out).",
    ),
    "errors": Chart(
        "Errors", ErrorRow, lambda d, a, f, by: d.errors(a, f, by=by),
        lambda rows, by: [figures.errors_figure(rows, by)],
        ("node", "model", "graph", "user", "day", "error_kind"),
        "Share of calls that failed and of attempts that were retried.",
    ),
    "cache": Chart(
        "Cache", CacheRow, lambda d, a, f, by: d.cache(a, f, by=by),
        lambda rows, by: [figures.cache_figure(rows, by)],
        ("day", "model", "graph", "user", "node"),
        "Model calls answered from the response cache, and the money they saved.",
    ),
    "budgets": Chart(
        "Budgets", BudgetBurnRow, lambda d, a, f, by: d.budget_burn(a, f),
        lambda rows, by: [figures.budget_figure(rows)], (),
        "Money left in each budget's current period, day by day, up to the range's end.",
    ),
    "approvals": Chart(
        "Approvals", ApprovalRow, lambda d, a, f, by: d.approvals(a, f, by=by),
        lambda rows, by: [
            figures.approvals_figure(rows, by), figures.decision_time_figure(rows, by)
        ],
        ("tier", "day", "node", "graph", "user", "action"),
        "Approvals requested in the range: how they were decided, and how long it took.",
    ),
    "approvers": Chart(
        "Approvers", ApproverRow, lambda d, a, f, by: d.approvers(a, f),
        lambda rows, by: [figures.approvers_figure(rows)], (),
        "Each approver's decisions on approvals requested in the range.",
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Ask:
    """What the page asks for: a chart, its grouping, a time range and filters."""

    chart: str = "cost"
    by: str = ""
    preset: str = "7d"
    since: str = ""  # custom range: first day, YYYY-MM-DD (UTC)
    until: str = ""  # custom range: last day, included
    graph_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    node_id: str | None = None
    choices_for: tuple[str, ...] | None = None  # the `range_key` the page's choices are for

    def range_key(self, workspace_id: str) -> tuple[str, ...]:
        return (workspace_id, self.preset, self.since, self.until)


@dataclass(frozen=True, slots=True)
class Choices:
    """Filter options found in the range (id → label), and the names ids are shown by."""

    graphs: dict[str, str]
    users: dict[str, str]
    models: dict[str, str]
    nodes: dict[str, str]
    names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Shown:
    """One answer for the page: the chart's rows, figures (plain dicts) and summary."""

    workspace_id: str
    chart: str
    by: str
    filters: Filters
    rows: list[Any]
    figures: list[dict[str, Any]]
    summary: str
    has_data: bool
    behind: bool
    choices: Choices | None  # None: the page's choices still hold


def _day(text: str, what: str) -> datetime:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        day = None
    if day is None or not 1970 <= day.year <= 9000:
        raise UserError(f"{what} must be a date like 2026-03-01, not {text[:40]!r}")
    return datetime.combine(day, time(), UTC)


def time_range(preset: str, since: str, until: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC: the last 24 hours, whole UTC days, or custom days (both kept)."""
    if preset == "24h":
        return now - timedelta(hours=24), now
    if preset in ("7d", "30d"):
        days = Filters.last_days(int(preset[:-1]), now=now)
        return days.start, days.end
    if preset != "custom":
        raise UserError(f"unknown time range {preset!r}; use one of {', '.join(PRESETS)}")
    start, end = _day(since, "From"), _day(until, "To") + timedelta(days=1)
    if start >= end:
        raise UserError(f"the range is empty: {since} is after {until}")
    return start, end


def load(analytics: WebAnalytics, studio: Studio, actor: Actor, ask: Ask) -> Shown:
    """Refresh the store, then answer one chart of the dashboard for `actor`."""
    analytics.require(actor)
    chart = CHARTS.get(ask.chart)
    if chart is None:
        raise UserError(f"there is no {ask.chart!r} chart; use one of {', '.join(CHARTS)}")
    by = ask.by if ask.by in chart.by else (chart.by[0] if chart.by else "")
    start, end = time_range(ask.preset, ask.since, ask.until, datetime.now(UTC))
    report = analytics.fresh()
    dash = analytics.dashboards()
    dims = {"graph_id": ask.graph_id, "user_id": ask.user_id, "model": ask.model,
            "node_id": ask.node_id}  # fmt: skip
    filters = Filters(start, end, **{k: v for k, v in dims.items() if v})
    rows = chart.query(dash, actor, filters, by)
    choices = None
    if ask.choices_for != ask.range_key(actor.workspace_id):
        choices = _choices(dash, studio, actor, Filters(start, end))
    names = _names_for(studio, actor, ask.chart, by, rows)
    shown = [_for_browser(f.to_plotly_json(), names, ask.chart, by)
             for f in chart.figures(rows, by)]  # fmt: skip
    return Shown(actor.workspace_id, ask.chart, by, filters, rows, shown, _summary(rows),
                 bool(rows) or _has_data(dash, actor),
                 analytics.behind if report is None else report.behind, choices)  # fmt: skip


def _has_data(dash: Dashboards, actor: Actor) -> bool:
    """Whether the workspace has any usage at all (else the page explains how to get some)."""
    tomorrow = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), time(), UTC)
    return bool(dash.errors(actor, Filters(_EVER, tomorrow), by="graph"))


def _choices(dash: Dashboards, studio: Studio, actor: Actor, f: Filters) -> Choices:
    graphs = [r.key for r in dash.errors(actor, f, by="graph") if isinstance(r.key, str)]
    users = [r.key for r in dash.errors(actor, f, by="user") if isinstance(r.key, str)]
    nodes = [r.key for r in dash.errors(actor, f, by="node") if isinstance(r.key, str)]
    models = [r.model for r in dash.cost(actor, f, by=("model",)) if r.model]
    names = _graph_names(studio, actor) | _user_names(studio, users)
    return Choices(
        {g: names.get(g, f"(deleted graph {g[:8]})") for g in sorted(graphs)},
        {u: names.get(u, u) for u in sorted(users)},
        {m: m for m in sorted(models)},
        {n: n for n in sorted(nodes)},
        names,
    )


def _graph_names(studio: Studio, actor: Actor) -> dict[str, str]:
    try:
        found = studio.manager.library.list(actor)
    except (Forbidden, NotFound):
        return {}
    counts: dict[str, int] = {}
    for graph in found:
        counts[graph.name] = counts.get(graph.name, 0) + 1
    return {g.graph_id: g.name if counts[g.name] == 1 else f"{g.name} ({g.graph_id[:8]})"
            for g in found}  # fmt: skip


def _names_for(
    studio: Studio, actor: Actor, chart: str, by: str, rows: Sequence[Any]
) -> dict[str, str]:
    """The names of the graph and user ids a figure shows."""
    if chart == "approvers":
        return _user_names(studio, [r.decided_by for r in rows])
    if by == "graph":
        return _graph_names(studio, actor)
    if by == "user":
        return _user_names(studio, [r.user_id if chart == "cost" else r.key for r in rows])
    return {}


def _user_names(studio: Studio, user_ids: Sequence[str | None]) -> dict[str, str]:
    names = {}
    for user_id in {u for u in user_ids if u}:
        try:
            names[user_id] = studio.accounts.get_user(user_id).email
        except StudioError:  # a headless or removed user: shown by id
            names[user_id] = user_id
    return names


def _for_browser(
    figure: dict[str, Any], names: dict[str, str], chart: str, by: str
) -> dict[str, Any]:
    """Show graph and user ids by name (customdata keeps the ids), every name as plain text
    (plotly reads tags such as <a> and <b> in labels, so they are escaped), and days as
    they are: one category each, not a time axis with hours."""
    ids_on_x = chart == "approvers" or (chart != "cost" and by in _NAMED)
    ids_in_names = chart == "cost" and by in _NAMED
    for trace in figure.get("data", []):
        xs = trace.get("x") or []
        trace["x"] = [_text(names.get(str(x), x) if ids_on_x else x) for x in xs]
        name = trace.get("name")
        trace["name"] = _text(names.get(str(name), name) if ids_in_names else name)
    xaxis = figure.get("layout", {}).get("xaxis", {})
    if xaxis.get("title", {}).get("text") == "day":
        xaxis["type"] = "category"
    return figure


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def usd(value: Decimal | None) -> str:
    """Money as the page shows it; unknown is "—", never $0."""
    if value is None:
        return "—"
    text = f"{value:,.6f}".rstrip("0")
    return f"${text}0" if text.endswith(".") else f"${text}"


def _summary(rows: Sequence[Any]) -> str:
    if rows and isinstance(rows[0], CostRow):
        return _cost_summary(rows)
    if rows and isinstance(rows[0], ApprovalRow):
        return _approval_summary(rows)
    return ""


def _cost_summary(rows: Sequence[CostRow]) -> str:
    known = [r.cost_usd for r in rows if r.cost_usd is not None]
    calls = sum(r.calls for r in rows)
    unpriced = sum(r.calls - r.priced_calls for r in rows)
    missing = sum(r.usage_missing_calls for r in rows)
    tokens_in = [r.input_tokens for r in rows if r.input_tokens is not None]
    tokens_out = [r.output_tokens for r in rows if r.output_tokens is not None]
    parts = [f"Cost {usd(sum(known, Decimal(0)) if known else None)}", f"{calls} model calls"]
    if unpriced:
        parts.append(f"{unpriced} of unknown cost (not counted)")
    if missing:
        parts.append(f"{missing} without usage")
    parts.append(f"{sum(tokens_in):,} input tokens" if tokens_in else "input tokens —")
    parts.append(f"{sum(tokens_out):,} output tokens" if tokens_out else "output tokens —")
    return " · ".join(parts)


def _approval_summary(rows: Sequence[ApprovalRow]) -> str:
    requested = sum(r.requested for r in rows)
    counts = {name: sum(getattr(r, name) for r in rows)
              for name in ("approved", "edited", "rejected", "responded", "pending")}  # fmt: skip
    decided = sum(v for k, v in counts.items() if k != "pending")
    parts = [f"{requested} requested", f"{counts['pending']} pending"]
    for name in ("approved", "edited", "rejected"):
        share = f"{100 * counts[name] / decided:.0f}%" if decided else "—"
        parts.append(f"{name} {share}")
    return " · ".join(parts)


_POINT_KEYS = frozenset({"source", *Point.__dataclass_fields__})


def _point(data: object) -> Point:
    """The clicked point, from customdata sent back by the browser (never trusted): known
    fields only, text values (a boolean `cache_hit`), a day between 1970 and 9000."""
    refused = UserError("this point of the chart has no runs to show")
    if not isinstance(data, dict) or not set(data) <= _POINT_KEYS:
        raise refused
    for name, value in data.items():
        kind = bool if name == "cache_hit" else str
        if value is not None and not (isinstance(value, kind) and len(str(value)) <= 300):
            raise refused
    try:
        point = figures.point_from_customdata(data)
    except (TypeError, ValueError):
        raise refused from None
    if point.day is not None and not 1970 <= point.day.year <= 9000:
        raise refused
    return point


def drill_down(analytics: WebAnalytics, actor: Actor, f: Filters, data: object) -> list[RunRef]:
    """The runs behind a clicked point, within the page's filters (widened to the point's
    day: a budget's burn-down may start before the range)."""
    analytics.require(actor)
    point = _point(data)
    if point.day is not None:
        day = datetime.combine(point.day, time(), UTC)
        f = Filters(min(f.start, day), max(f.end, day + timedelta(days=1)),
                    **dict(f.dims()))  # fmt: skip
    return analytics.dashboards().runs_behind(actor, f, point, limit=DRILL_LIMIT)


def export(analytics: WebAnalytics, actor: Actor, shown: Shown, fmt: str) -> tuple[bytes, str]:
    """The rows the page shows as CSV or Parquet bytes, and a file name."""
    analytics.require(actor)
    if actor.workspace_id != shown.workspace_id:
        raise NotFound("these rows belong to another workspace now; reload the page")
    row_type = CHARTS[shown.chart].row_type
    if fmt == "csv":
        data = exports.to_csv(shown.rows, row_type).encode("utf-8")
    elif fmt == "parquet":
        data = exports.to_parquet(shown.rows, row_type)
    else:
        raise UserError(f"cannot export as {fmt!r}; use csv or parquet")
    start, end = shown.filters.start, shown.filters.end
    return data, f"{shown.chart}-{start:%Y%m%d}-{end:%Y%m%d}.{fmt}"
