"""Router, transform and output nodes, run inside real LangGraph graphs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AnyMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import ValidationError

from components.base import (
    BuildContext,
    BuiltNode,
    NodeSpec,
    RunContext,
)
from components.errors import UserError
from components.expressions import evaluate
from components.nodes import compress, memory, output, router, transform
from components.registry import Registry
from tests.components.doubles import EchoOutbox, NoApprovals, NoSecrets, no_tool_calls


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    price: float
    quantity: int
    name: str
    total: float
    greeting: str
    profile: dict[str, Any]
    tags: list[str]
    count: int
    flag: bool
    a: int
    b: int
    studio_output: dict[str, Any]
    studio_tainted: bool


FIELDS = {
    "messages": "messages",
    "price": "number",
    "quantity": "integer",
    "name": "string",
    "total": "number",
    "greeting": "string",
    "profile": "object",
    "tags": "list",
    "count": "integer",
    "flag": "boolean",
    "a": "integer",
    "b": "integer",
    "studio_output": "object",
    "studio_tainted": "boolean",
}


def run_context() -> RunContext:
    return RunContext(
        workspace_id="ws1",
        run_id="run1",
        user_id="u1",
        secrets=NoSecrets(),
        outbox=EchoOutbox(),
        approvals=NoApprovals(),
    )


def build_ctx() -> BuildContext:
    return BuildContext(
        graph_name="test",
        node_ids=frozenset({"n"}),
        tools={},
        state_fields=FIELDS,
        compile_subgraph=lambda doc: None,
        call_tool=no_tool_calls,
    )


def build(spec: NodeSpec, config: dict[str, Any], node_id: str = "n") -> BuiltNode:
    return spec.build(node_id, spec.config_model.model_validate(config), build_ctx())


def run_one(built: BuiltNode, inputs: dict[str, Any], checkpointer: Any = None) -> dict[str, Any]:
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("n", built.fn)
    graph.add_edge(START, "n")
    graph.add_edge("n", END)
    app: Any = graph.compile(checkpointer=checkpointer or InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    result: dict[str, Any] = app.invoke(inputs, config, context=run_context())
    return result


# --- registration and help text -------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "type_name", "group"),
    [
        (router, "router", "Flow"),
        (transform, "transform", "Data"),
        (output, "output", "Flow"),
        (memory, "memory", "Memory"),
        (compress, "compress", "Memory"),
    ],
)
def test_each_node_registers_its_spec_with_help_text(
    module: Any, type_name: str, group: str
) -> None:
    registry = Registry()
    module.register(registry)
    spec = registry.nodes[type_name]
    assert spec is module.SPEC
    assert spec.group == group
    assert spec.title and spec.description
    for name, field in spec.config_model.model_fields.items():
        assert field.description, f"{type_name}.{name} has no help text"
    with pytest.raises(ValidationError):
        spec.config_model.model_validate({"no_such_setting": 1})


# --- router -------------------------------------------------------------------------------


def test_router_changes_nothing_and_edges_choose_the_branch() -> None:
    built = build(router.SPEC, {"note": "big orders need a second look"})
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("route", built.fn)
    graph.add_node("big", lambda s: {"greeting": "big"})
    graph.add_node("small", lambda s: {"greeting": "small"})
    graph.add_edge(START, "route")
    graph.add_conditional_edges(
        "route", lambda s: "big" if evaluate("price * quantity > 100", s) else "small"
    )
    graph.add_edge("big", END)
    graph.add_edge("small", END)
    app: Any = graph.compile(checkpointer=InMemorySaver())

    big = app.invoke(
        {"price": 60.0, "quantity": 2}, {"configurable": {"thread_id": "a"}}, context=run_context()
    )
    small = app.invoke(
        {"price": 6.0, "quantity": 2}, {"configurable": {"thread_id": "b"}}, context=run_context()
    )

    assert big == {"messages": [], "price": 60.0, "quantity": 2, "greeting": "big"}
    assert small["greeting"] == "small"
    assert built.fn({"price": 1.0}, None) == {}


# --- transform ----------------------------------------------------------------------------


def test_transform_computes_arithmetic_string_and_dict_values() -> None:
    built = build(
        transform.SPEC,
        {
            "assign": {
                "total": "round(price * quantity * 1.2, 2)",
                "greeting": "'Hello, ' + upper(name) + '!'",
                "profile": "{'name': name, 'items': quantity, 'vip': quantity >= 3}",
                "count": "  len(tags) + 1",  # leading spaces are fine
            }
        },
    )
    result = run_one(built, {"price": 2.5, "quantity": 3, "name": "ada", "tags": ["x", "y"]})
    assert result["total"] == 9.0
    assert result["greeting"] == "Hello, ADA!"
    assert result["profile"] == {"name": "ada", "items": 3, "vip": True}
    assert result["count"] == 3


def test_transform_expressions_all_read_the_state_before_the_node() -> None:
    built = build(transform.SPEC, {"assign": {"a": "b", "b": "a"}})
    assert run_one(built, {"a": 1, "b": 2}) | {"messages": []} == {"messages": [], "a": 2, "b": 1}


def test_transform_expression_cannot_change_the_state_in_place() -> None:
    with pytest.raises(UserError, match="attribute access"):
        build(transform.SPEC, {"assign": {"flag": "tags.append('evil') is None"}})


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nope", "not a state field"),
        ("messages", "cannot be assigned"),
        ("studio_output", "cannot be assigned"),
        ("studio_tainted", "cannot be assigned"),
    ],
)
def test_transform_refuses_targets_at_build_time(target: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected) as caught:
        build(transform.SPEC, {"assign": {target: "1"}}, node_id="calc")
    assert "'calc'" in str(caught.value)
    assert repr(target) in str(caught.value)


def test_transform_refuses_an_expression_that_does_not_parse_at_build_time() -> None:
    with pytest.raises(UserError, match=r"'calc', field 'total'.*does not parse"):
        build(transform.SPEC, {"assign": {"total": "price *"}}, node_id="calc")


@pytest.mark.parametrize(
    "expression",
    [
        "name.__class__",
        "name.__class__.__mro__[1].__subclasses__()",
        "get.__globals__",
        "__import__('os').system('true')",
        "import os",
        "(lambda: 1)()",
        "[x for x in range(10**9)]",
        "[[i for i in [1] * 9999] for j in [1] * 9999]",
        "9**9**9",
        "'a' * 10**9",
        "name.format_map({})",
        "open('/etc/passwd')",
        "1 / 0",
        "missing_field + 1",
    ],
)
def test_transform_refuses_hostile_or_failing_expressions_quickly(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(UserError) as caught:  # refused when the graph is built, or when run
        built = build(transform.SPEC, {"assign": {"total": expression}}, node_id="calc")
        run_one(built, {"name": "ada", "price": 1.0})
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert "transform node 'calc'" in message
    assert "field 'total'" in message


def test_transform_refuses_a_value_of_the_wrong_type() -> None:
    built = build(transform.SPEC, {"assign": {"quantity": "name"}}, node_id="calc")
    with pytest.raises(UserError, match=r"'quantity' is declared as integer.*gave a str"):
        run_one(built, {"name": "ada"})
    flag_as_count = build(transform.SPEC, {"assign": {"count": "True"}})
    with pytest.raises(UserError, match="gave a bool"):
        run_one(flag_as_count, {})


# --- output -------------------------------------------------------------------------------


def test_output_publishes_fields_and_text_into_the_reserved_key(tmp_path: Path) -> None:
    built = build(
        output.SPEC,
        {"fields": ["total", "profile"], "template": "Total for {{ profile.name }}: {{ total }}"},
    )
    path = tmp_path / "checkpoints.sqlite"
    saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    result = run_one(built, {"total": 7.5, "profile": {"name": "ada"}, "price": 1.0}, saver)

    expected = {"total": 7.5, "profile": {"name": "ada"}, "result": "Total for ada: 7.5"}
    assert output.OUTPUT_KEY == "studio_output"
    assert result["studio_output"] == expected
    assert result["studio_output"]["profile"] is not result["profile"]

    reopened = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    saved = reopened.get_tuple({"configurable": {"thread_id": "t1"}})
    assert saved is not None
    assert saved.checkpoint["channel_values"]["studio_output"] == expected


def test_output_text_goes_under_the_chosen_target() -> None:
    built = build(output.SPEC, {"template": "Hi {{ name }}", "target": "text"})
    assert run_one(built, {"name": "ada"})["studio_output"] == {"text": "Hi ada"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "publishes nothing"),
        ({"fields": ["nope"]}, "not a state field"),
        ({"fields": ["messages"]}, "cannot publish 'messages'"),
        ({"fields": ["studio_output"]}, "cannot publish 'studio_output'"),
        ({"template": "{{ nope }}"}, "not state fields"),
        ({"fields": ["total"], "template": "x", "target": "total"}, "also a published field"),
    ],
)
def test_output_refuses_bad_settings_at_build_time(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(UserError, match=expected) as caught:
        build(output.SPEC, config, node_id="final")
    assert "output node 'final'" in str(caught.value)


def test_output_names_the_node_when_a_template_field_is_unset() -> None:
    built = build(output.SPEC, {"template": "{{ greeting }}"}, node_id="final")
    with pytest.raises(UserError, match=r"output node 'final'.*'greeting'"):
        run_one(built, {"name": "ada"})
