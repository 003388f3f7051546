"""`studio analytics`: the dashboards' numbers, headless — the same queries and figures.

    studio analytics cost --days 7 --by day,model
    studio analytics latency --by node --graph GRAPH_ID
    studio analytics runs --day 2026-03-02 --outcome error     (the runs behind a point)

Each command prints the rows as a table (`--json` for scripts) and can also write them as
CSV (`--csv FILE`), Parquet (`--parquet FILE`) or the plotly figure as a standalone HTML
page (`--figure FILE`). It acts like the other commands: as the `STUDIO_TOKEN` principal,
else as the local operator in the local workspace, and needs ``analytics:read``.

The server owns the analytics DuckDB file (no other process may open it), so a command
loads its own in-memory snapshot of the actor's workspace from the studio database — only
that workspace's rows, from the start of the range on — and works while a server runs.
"""

from __future__ import annotations

__all__ = ["add_analytics_commands"]

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from analytics import export
from analytics.queries import READ, Dashboards
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
from analytics.store import AnalyticsStore
from components.errors import UserError
from studio.admin import acting_actor, emit, open_cli_studio
from studio.context import StudioAuthorizer

Query = Callable[[Dashboards, Any, Filters, argparse.Namespace], list[Any]]
_DIMS = ("day", "graph", "user", "model", "node")


@dataclass(frozen=True, slots=True)
class _Report:
    help: str
    row_type: type[Any]
    query: Query
    figure: str | None  # the builder in `analytics.figures` (imported only when asked)
    by: tuple[str, ...] = ()  # the choices of --by (the first is the default)
    figure_by: bool = True  # whether the builder takes --by


def _dims(text: str) -> tuple[Any, ...]:
    dims = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [d for d in dims if d not in _DIMS]
    if unknown:
        raise UserError(f"--by takes {', '.join(_DIMS)}; not {', '.join(unknown)}")
    return dims


def _point(args: argparse.Namespace) -> Point:
    day = date.fromisoformat(args.day) if args.day else None
    if args.approvals:
        return Point("approvals", day=day, tier=args.tier, status=args.status,
                     decided_by=args.decided_by)  # fmt: skip
    return Point("usage", day=day, outcome=args.outcome, error_kind=args.error_kind)


_REPORTS: dict[str, _Report] = {
    "cost": _Report(
        "cost and tokens of model calls (--by: comma-separated, of day,graph,user,model,node)",
        CostRow, lambda d, a, f, x: d.cost(a, f, by=_dims(x.by)), "cost_figure", _DIMS,
        figure_by=False,
    ),
    "tokens": _Report(
        "tokens of model calls per day (calls without usage are counted apart)", CostRow,
        lambda d, a, f, x: d.cost(a, f, by=("day",)), "tokens_figure",
    ),
    "latency": _Report(
        "p50/p95/p99 latency of calls", LatencyRow,
        lambda d, a, f, x: d.latency(a, f, by=x.by, ttft=x.ttft), "latency_figure",
        ("node", "model", "graph", "user", "day"),
    ),
    "errors": _Report(
        "calls by outcome, error and retry rates", ErrorRow,
        lambda d, a, f, x: d.errors(a, f, by=x.by), "errors_figure",
        ("node", "model", "graph", "user", "day", "error_kind"),
    ),
    "cache": _Report(
        "response cache hit rate and money saved", CacheRow,
        lambda d, a, f, x: d.cache(a, f, by=x.by), "cache_figure",
        ("day", "model", "graph", "user", "node"),
    ),
    "budgets": _Report(
        "budget burn-down in each budget's current period", BudgetBurnRow,
        lambda d, a, f, x: d.budget_burn(a, f), "budget_figure",
    ),
    "approvals": _Report(
        "approvals: decisions, rates, time to decision", ApprovalRow,
        lambda d, a, f, x: d.approvals(a, f, by=x.by), "approvals_figure",
        ("tier", "day", "node", "graph", "user", "action"),
    ),
    "approvers": _Report(
        "each approver's decisions", ApproverRow,
        lambda d, a, f, x: d.approvers(a, f), "approvers_figure",
    ),
    "runs": _Report(
        "the runs behind a point of a figure (drill-down)", RunRef,
        lambda d, a, f, x: d.runs_behind(a, f, _point(x), limit=x.limit), None,
    ),
}  # fmt: skip


def _when(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} must be a date or time like 2026-03-01, not {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filters(args: argparse.Namespace) -> Filters:
    dims = {"graph_id": args.graph, "user_id": args.user, "model": args.model}
    dims = {k: v for k, v in (dims | {"node_id": args.node}).items() if v}
    if args.since is None and args.until is None:
        return Filters.last_days(args.days, **dims)
    tomorrow = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(), UTC)
    end = _when(args.until, "--until") if args.until else tomorrow
    start = _when(args.since, "--since") if args.since else end - timedelta(days=args.days)
    return Filters(start, end, **dims)


def cmd_analytics(args: argparse.Namespace) -> int:
    report = _REPORTS[args.report]
    filters = _filters(args)
    with open_cli_studio(args) as studio:
        actor = acting_actor(studio)
        authorizer = StudioAuthorizer(studio.rbac)
        authorizer.require(actor, READ)  # before a single row is loaded
        since = None if args.report == "budgets" else filters.start
        with AnalyticsStore.snapshot(studio.engine, actor.workspace_id, since=since) as store:
            store.refresh()
            rows = report.query(Dashboards(store, authorizer), actor, filters, args)
    emit(args, rows, lambda rs: export.text_table(rs, report.row_type))
    _write(args, rows, report)
    return 0


def _write(args: argparse.Namespace, rows: list[Any], report: _Report) -> None:
    if args.csv:
        Path(args.csv).write_text(export.to_csv(rows, report.row_type), encoding="utf-8")
    if args.parquet:
        Path(args.parquet).write_bytes(export.to_parquet(rows, report.row_type))
    if args.figure:
        if report.figure is None:
            raise UserError(f"`studio analytics {args.report}` has no figure")
        from analytics import figures  # plotly only when a figure is asked for

        build = getattr(figures, report.figure)
        if report.figure == "cost_figure":  # one colour per the last dimension but the day
            colours = [d for d in _dims(args.by) if d != "day"] or ["model"]
            figure = build(rows, colours[-1])
        else:
            figure = build(rows, args.by) if report.by else build(rows)
        figure.write_html(args.figure, include_plotlyjs=True)


def _options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="studio database file (default: $STUDIO_DATA_DIR/studio.db)")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--days", type=int, default=30, help="whole UTC days up to today")
    common.add_argument("--since", help="start (UTC unless it says otherwise), e.g. 2026-03-01")
    common.add_argument("--until", help="end, exclusive (default: the end of today, UTC)")
    for name in ("graph", "user", "model", "node"):
        common.add_argument(f"--{name}", help=f"only this {name} (its id)")
    common.add_argument("--csv", metavar="FILE", help="also write the rows as CSV")
    common.add_argument("--parquet", metavar="FILE", help="also write the rows as Parquet")
    common.add_argument("--figure", metavar="FILE", help="also write the figure as HTML")
    return common


def add_analytics_commands(sub: Any) -> None:
    """Register `studio analytics <report>` on the `studio` command's subparsers."""
    common = _options()
    reports = sub.add_parser(
        "analytics", help="cost, latency, errors, cache, budgets, approvals (headless)"
    ).add_subparsers(dest="report", required=True)
    for name, report in _REPORTS.items():
        parser = reports.add_parser(name, parents=[common], help=report.help)
        if report.by and not report.figure_by:  # several dimensions at once
            parser.add_argument("--by", default="day,model", help="comma-separated dimensions")
        elif report.by:
            parser.add_argument("--by", default=report.by[0], choices=report.by)
        parser.set_defaults(func=cmd_analytics)
    reports.choices["latency"].add_argument(
        "--ttft", action="store_true", help="also time to first token (streamed answers)"
    )
    runs = reports.choices["runs"]
    runs.add_argument("--day", help="the point's day (UTC), e.g. 2026-03-02")
    runs.add_argument("--outcome", help="ok, error, retry, fallback, cache_hit, budget_*")
    runs.add_argument("--error-kind", help="for example timeout")
    runs.add_argument("--approvals", action="store_true", help="runs behind approval rows")
    runs.add_argument("--tier", help="with --approvals: confirm or admin")
    runs.add_argument("--status", help="with --approvals: approved, rejected, pending...")
    runs.add_argument("--decided-by", help="with --approvals: the approver's user id")
    runs.add_argument("--limit", type=int, default=100, help="at most this many runs")
