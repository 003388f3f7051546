"""The "function" tool type and the demo functions the example graphs call."""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

import pytest
from pydantic import ValidationError

from components.base import HttpPolicy, Tool, ToolContext
from components.errors import NotFound, ToolFailure, UserError
from components.registry import Registry
from components.tools import demo, function
from components.tools.email import is_email_address


class _NoOutbox:
    def enqueue_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str:
        raise AssertionError("a free function tool must not write to the outbox")


def _no_secrets(name: str) -> str:
    raise NotFound(f"no secret {name!r}")


CTX = ToolContext(
    workspace_id="ws-1",
    run_id="run-1",
    user_id="user-1",
    node_id="agent",
    tool_call_id="call-7",
    idempotency_key="k" * 64,
    secrets=_no_secrets,
    outbox=_NoOutbox(),
    http=HttpPolicy(),
)


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    function.register(registry)
    demo.register(registry)
    return registry


def build(registry: Registry, tool_name: str, **config: Any) -> Tool:
    spec = registry.tool_types["function"]
    return spec.build(tool_name, spec.config_model(**config), registry)


def run(tool: Tool, args: dict[str, Any]) -> Any:
    return tool.invoke(tool.args_model.model_validate(args), CTX)


# --- the "function" tool type ---------------------------------------------------------------


def test_built_tool_is_the_registered_function_under_the_declared_name(
    registry: Registry,
) -> None:
    tool = build(registry, "find_order", function="lookup_order")
    registered = registry.function("lookup_order")

    assert tool.name == "find_order"
    assert registered.name == "lookup_order"  # the registry's tool is not changed
    assert tool.description == registered.description
    assert (tool.side_effect, tool.default_tier) == (False, "free")
    assert tool.json_schema()["required"] == ["order_id"]
    assert run(tool, {"order_id": "A-1"}) == demo.lookup_order("A-1")


def test_relabelled_tool_keeps_flags_and_receives_the_context() -> None:
    registry = Registry()
    function.register(registry)
    seen: list[str] = []

    def refund(order_id: str, amount: float, *, context: ToolContext) -> dict[str, Any]:
        """Refund an order."""
        seen.append(context.idempotency_key)
        return {"refunded": order_id, "amount": amount}

    registry.add_function(refund, side_effect=True, tier="admin", untrusted_output=True)
    tool = build(registry, "refund_order", function="refund")

    assert (tool.side_effect, tool.default_tier, tool.untrusted_output) == (True, "admin", True)
    assert "context" not in tool.json_schema()["properties"]
    assert run(tool, {"order_id": "A-1", "amount": 5}) == {"refunded": "A-1", "amount": 5.0}
    assert seen == [CTX.idempotency_key]
    with pytest.raises(ValidationError):
        tool.args_model.model_validate({"order_id": "A-1", "amount": 5, "context": "forged"})


def test_unknown_function_is_a_user_error_naming_it(registry: Registry) -> None:
    with pytest.raises(UserError, match=r"'find_order'.*'delete_everything'.*not registered"):
        build(registry, "find_order", function="delete_everything")


@pytest.mark.parametrize("config", [{}, {"function": ""}, {"function": "x", "extra": 1}])
def test_bad_function_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        function.FunctionConfig(**config)


# --- demo functions ---------------------------------------------------------------------------


def test_demo_functions_are_registered_as_free_documented_tools(registry: Registry) -> None:
    names = {"lookup_order", "load_dataset", "describe_column"}
    assert names <= set(registry.functions)
    for name in names:
        tool = registry.function(name)
        assert (tool.side_effect, tool.default_tier, tool.untrusted_output) == (
            False,
            "free",
            False,
        )
        assert len(tool.description) > 150, name  # the docstring is what the model reads


@pytest.mark.parametrize("order_id", ["A-1042", "ORDER-7", "9", "X" * 20, "----"])
def test_lookup_order_is_deterministic_and_consistent(order_id: str) -> None:
    order = demo.lookup_order(order_id)

    assert order == demo.lookup_order(order_id)
    assert order["order_id"] == order_id
    assert order["customer_email"] == f"customer-{order_id}@example.com"
    assert is_email_address(order["customer_email"])
    assert order["status"] in {"processing", "shipped", "delivered", "returned"}
    assert re.fullmatch(r"2024-\d\d-\d\d", order["placed_on"])
    assert 1 <= len(order["items"]) <= 3
    cents = sum(round(item["unit_price"] * 100) * item["quantity"] for item in order["items"])
    assert order["total"] == {"amount": cents / 100, "currency": "EUR"}
    json.dumps(order)  # tool results travel as JSON


def test_lookup_order_varies_with_the_id() -> None:
    orders = [demo.lookup_order(f"A-{n}") for n in range(40)]
    assert len({json.dumps(o["items"]) for o in orders}) > 10
    assert len({o["status"] for o in orders}) >= 3


@pytest.mark.parametrize(
    "order_id",
    ["", "a-1042", "A 1042", "A-1042\n", "X" * 21, "../etc/passwd", "A-1;DROP", "Ä-1", "A_1"],
)
def test_lookup_order_refuses_malformed_ids(order_id: str) -> None:
    with pytest.raises(ToolFailure, match="order ids are 1-20 upper-case letters"):
        demo.lookup_order(order_id)


@pytest.mark.parametrize("name", ["sales", "support_tickets"])
def test_load_dataset_gives_200_deterministic_rows_matching_its_columns(name: str) -> None:
    data = demo.load_dataset(name)

    assert data == demo.load_dataset(name)
    assert (data["name"], data["row_count"], len(data["rows"])) == (name, 200, 200)
    assert set(data["columns"].values()) == {"number", "text"}
    for row in data["rows"]:
        assert list(row) == list(data["columns"])
        for column, kind in data["columns"].items():
            assert isinstance(row[column], (int, float) if kind == "number" else str)
    json.dumps(data)


def test_load_dataset_returns_fresh_rows_each_time() -> None:
    first = demo.load_dataset("sales")
    first["rows"][0]["units"] = -1
    assert demo.load_dataset("sales")["rows"][0]["units"] != -1


@pytest.mark.parametrize("name", ["", "Sales", "customers", "../sales"])
def test_unknown_dataset_is_refused_with_the_available_names(name: str) -> None:
    with pytest.raises(ToolFailure, match="available datasets: sales, support_tickets"):
        demo.load_dataset(name)


@pytest.mark.parametrize(
    "name, column",
    [("sales", "units"), ("sales", "revenue"), ("support_tickets", "resolution_hours")],
)
def test_describe_numeric_column_matches_the_dataset(name: str, column: str) -> None:
    values = [row[column] for row in demo.load_dataset(name)["rows"]]
    summary = demo.describe_column(name, column)

    assert summary["kind"] == "number"
    assert summary["count"] == 200
    assert summary["min"] == min(values) < summary["p50"] < summary["max"] == max(values)
    assert summary["p50"] == statistics.median(values)
    assert summary["mean"] == pytest.approx(statistics.fmean(values), abs=1e-3)


def test_describe_text_column_lists_the_most_frequent_values() -> None:
    rows = demo.load_dataset("support_tickets")["rows"]
    summary = demo.describe_column("support_tickets", "priority")

    assert summary["kind"] == "text"
    assert summary["distinct"] == len({row["priority"] for row in rows}) == 4
    counts = [entry["count"] for entry in summary["top"]]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == summary["count"] == 200
    for entry in summary["top"]:
        assert entry["count"] == sum(row["priority"] == entry["value"] for row in rows)


def test_describe_unknown_column_names_the_real_columns() -> None:
    with pytest.raises(ToolFailure, match=r"no column 'price'; its columns are order_date"):
        demo.describe_column("sales", "price")


def test_demo_tools_validate_their_arguments(registry: Registry) -> None:
    tool = registry.function("describe_column")
    assert run(tool, {"name": "sales", "column": "region"})["kind"] == "text"
    for bad in ({"name": "sales"}, {"name": "sales", "column": 3}, {"name": "sales", "x": 1}):
        with pytest.raises(ValidationError):
            tool.args_model.model_validate(bad)
