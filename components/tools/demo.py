"""Demo functions the example graphs call: an order lookup and two small synthetic datasets.

Everything here is deterministic and does no I/O: the same arguments give the same answer on
every machine (values are drawn from SHA-256 of the arguments, not from `random`).
"""

from __future__ import annotations

__all__ = ["DATASETS", "describe_column", "load_dataset", "lookup_order", "register"]

import hashlib
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from components.errors import ToolFailure
from components.registry import Registry

_ORDER_ID = re.compile(r"[A-Z0-9-]{1,20}")
_CATALOGUE = (
    ("SKU-100", "USB-C charger", 1999),
    ("SKU-200", "Noise-cancelling headphones", 14900),
    ("SKU-300", "Laptop stand", 3450),
    ("SKU-400", "Mechanical keyboard", 8900),
    ("SKU-500", "27-inch monitor", 22900),
    ("SKU-600", "Webcam", 5900),
)
_ORDER_STATUSES = ("processing", "shipped", "delivered", "delivered", "returned")
_ROWS = 200
_START = date(2024, 1, 1)


def _draw(*parts: object) -> float:
    """A deterministic number in [0, 1) from the given parts."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(options: Sequence[Any], *parts: object) -> Any:
    return options[int(_draw(*parts) * len(options))]


def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up one customer order by its id (upper-case letters, digits and '-', e.g. 'A-1042').

    Returns the order id, the customer's e-mail address, the order status (processing,
    shipped, delivered or returned), the date it was placed, the line items (sku, name,
    quantity, unit price) and the total amount with its currency. Use it before answering
    any question about an order or writing to its customer.
    """
    if not _ORDER_ID.fullmatch(order_id):
        raise ToolFailure(
            f"no order {order_id!r}: order ids are 1-20 upper-case letters, digits or '-', "
            "for example 'A-1042'"
        )
    items, total_cents = [], 0
    for line in range(1 + int(_draw(order_id, "lines") * 3)):
        sku, name, cents = _pick(_CATALOGUE, order_id, "sku", line)
        quantity = 1 + int(_draw(order_id, "qty", line) * 3)
        total_cents += cents * quantity
        items.append({"sku": sku, "name": name, "quantity": quantity, "unit_price": cents / 100})
    return {
        "order_id": order_id,
        "customer_email": f"customer-{order_id}@example.com",
        "status": _pick(_ORDER_STATUSES, order_id, "status"),
        "placed_on": (_START + timedelta(days=int(_draw(order_id, "day") * 365))).isoformat(),
        "items": items,
        "total": {"amount": total_cents / 100, "currency": "EUR"},
    }


def _sales_row(i: int) -> dict[str, Any]:
    units = 1 + int(_draw("sales", i, "units") * 20)
    _, product, cents = _pick(_CATALOGUE, "sales", i, "product")
    return {
        "order_date": (_START + timedelta(days=i * 365 // _ROWS)).isoformat(),
        "region": _pick(("North", "South", "East", "West"), "sales", i, "region"),
        "product": product,
        "units": units,
        "revenue": round(units * cents / 100, 2),
    }


def _ticket_row(i: int) -> dict[str, Any]:
    priority = _pick(("low", "normal", "normal", "high", "urgent"), "tickets", i, "priority")
    base_hours = {"urgent": 2.0, "high": 8.0, "normal": 24.0, "low": 72.0}[priority]
    return {
        "ticket_id": f"T-{1000 + i}",
        "opened_on": (_START + timedelta(days=i * 365 // _ROWS)).isoformat(),
        "channel": _pick(("email", "chat", "phone"), "tickets", i, "channel"),
        "priority": priority,
        "resolution_hours": round(base_hours * (0.25 + 1.5 * _draw("tickets", i, "hours")), 1),
        "satisfaction": 1 + int(_draw("tickets", i, "csat") ** 0.5 * 5),
    }


DATASETS: dict[str, tuple[dict[str, str], Callable[[int], dict[str, Any]]]] = {
    "sales": (
        {
            "order_date": "text",
            "region": "text",
            "product": "text",
            "units": "number",
            "revenue": "number",
        },
        _sales_row,
    ),
    "support_tickets": (
        {
            "ticket_id": "text",
            "opened_on": "text",
            "channel": "text",
            "priority": "text",
            "resolution_hours": "number",
            "satisfaction": "number",
        },
        _ticket_row,
    ),
}


def _dataset(name: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    if name not in DATASETS:
        raise ToolFailure(f"no dataset {name!r}; available datasets: {', '.join(sorted(DATASETS))}")
    columns, make_row = DATASETS[name]
    return dict(columns), [make_row(i) for i in range(_ROWS)]


def load_dataset(name: str) -> dict[str, Any]:
    """Load a whole demo dataset by name: 'sales' (one row per order in 2024: order_date,
    region, product, units, revenue in EUR) or 'support_tickets' (ticket_id, opened_on,
    channel, priority, resolution_hours, satisfaction 1-5).

    Returns the dataset name, the row count, each column with its kind ('number' or
    'text') and all 200 rows. To summarise a single column, prefer describe_column.
    """
    columns, rows = _dataset(name)
    return {"name": name, "row_count": len(rows), "columns": columns, "rows": rows}


def describe_column(name: str, column: str) -> dict[str, Any]:
    """Summarise one column of a demo dataset ('sales' or 'support_tickets').

    For a number column: count, mean, min, max and p50 (the median). For a text column:
    count, the number of distinct values and the five most frequent values with their
    counts. Call load_dataset first if you do not know the column names.
    """
    columns, rows = _dataset(name)
    if column not in columns:
        raise ToolFailure(
            f"dataset {name!r} has no column {column!r}; its columns are {', '.join(columns)}"
        )
    values = [row[column] for row in rows]
    if columns[column] == "number":
        return {
            "dataset": name,
            "column": column,
            "kind": "number",
            "count": len(values),
            "mean": round(statistics.fmean(values), 3),
            "min": min(values),
            "max": max(values),
            "p50": statistics.median(values),
        }
    counts = sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "dataset": name,
        "column": column,
        "kind": "text",
        "count": len(values),
        "distinct": len(counts),
        "top": [{"value": value, "count": n} for value, n in counts[:5]],
    }


def register(registry: Registry) -> None:
    for fn in (lookup_order, load_dataset, describe_column):
        registry.add_function(fn, side_effect=False, tier="free")
