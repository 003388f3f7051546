"""Step events, pricing, budgets, DuckDB queries and plotly figures.

The public names below load their module on first use (PEP 562), so importing one part of
`analytics` (the meter on a run's hot path, say) does not import DuckDB or plotly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "AnalyticsStore": "analytics.store",
    "AnalyticsUnavailable": "analytics.store",
    "LoadReport": "analytics.store",
    "READ": "analytics.queries",
    "Dashboards": "analytics.queries",
    "ApprovalRow": "analytics.rows",
    "ApproverRow": "analytics.rows",
    "BudgetBurnRow": "analytics.rows",
    "CacheRow": "analytics.rows",
    "CostRow": "analytics.rows",
    "ErrorRow": "analytics.rows",
    "Filters": "analytics.rows",
    "LatencyRow": "analytics.rows",
    "Point": "analytics.rows",
    "RunRef": "analytics.rows",
}
__all__ = [
    "READ",
    "AnalyticsStore",
    "AnalyticsUnavailable",
    "ApprovalRow",
    "ApproverRow",
    "BudgetBurnRow",
    "CacheRow",
    "CostRow",
    "Dashboards",
    "ErrorRow",
    "Filters",
    "LatencyRow",
    "LoadReport",
    "Point",
    "RunRef",
]

if TYPE_CHECKING:
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
    from analytics.store import AnalyticsStore, AnalyticsUnavailable, LoadReport


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'analytics' has no attribute {name!r}")
    return getattr(import_module(module), name)
