"""Accounting end to end: every model attempt and tool call of a real run is one usage row,
and the totals equal exactly what the provider reported — scripted model and the loopback
OpenAI-compatible server, streamed and not, agent tool loops, sub-graphs, retries and
fallbacks. Missing usage stays missing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from analytics.pricing import Rates
from components.base import TokenUsage
from graphs.headless import Runtime
from graphs.identity import Actor
from tests.analytics.helpers import (
    LOOKUP_TOOL,
    SCRIPTED_PRICE,
    budgets_of,
    cost_total,
    final_messages,
    llm_doc,
    metered_runtime,
    model_rows,
    price_scripted,
    reported_usage,
    rows,
    run,
    token_totals,
)
from tests.loopback.openai_server import Answer, HttpError, OpenAILoopback, ToolCall, openai_server

SCRIPTED_RATES = Rates(*(Decimal(SCRIPTED_PRICE[k]) for k in SCRIPTED_PRICE))
LOOPBACK_RATES = Rates(Decimal("2"), Decimal("8"), Decimal("1"))


@pytest.fixture(params=[True, False], ids=["streamed", "unstreamed"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    with metered_runtime(tmp_path / "studio.db", stream_tokens=request.param) as runtime:
        yield runtime


@pytest.fixture
def server() -> Iterator[OpenAILoopback]:
    with openai_server() as loopback:
        yield loopback


def streamed(rt: Runtime) -> bool:
    return rt.manager.stream_tokens


def loopback_doc(server: OpenAILoopback, name: str = "Loopback", **node: Any) -> dict[str, Any]:
    provider = {"model": "gpt-loopback", "base_url": server.base_url, "max_retries": 1}
    provider.update(node.pop("provider_config", {}))
    return llm_doc(name, provider="openai", provider_config=provider, **node)


def price_loopback(rt: Runtime, actor: Actor, model: str = "gpt-loopback") -> None:
    budgets_of(rt).set_price(
        actor,
        model=model,
        provider="openai",
        input_per_mtok="2",
        output_per_mtok="8",
        cached_per_mtok="1",
    )


def node_costs(rt: Runtime, run_id: str) -> list[dict[str, Any]]:
    rt.manager.events.flush()
    events = rt.manager.events.history("acme", run_id)
    return [e.data["cost"] for e in events if e.kind == "node_finished" and "cost" in e.data]


# --- the scripted model ------------------------------------------------------------------


def test_agent_tool_loop_totals_equal_the_reported_usage(rt: Runtime, alice: Actor) -> None:
    price_scripted(rt, alice)
    script = [
        {
            "text": "Let me look.",
            "tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-7"}}],
        },
        {"text": "Order A-7 is on its way; it left the warehouse this morning."},
    ]
    view = run(rt, alice, llm_doc(script=script, tools=[LOOKUP_TOOL]))
    assert view.status == "succeeded", view.error

    models = model_rows(rt, view.run_id)
    assert [(r.attempt, r.outcome, r.model, r.provider) for r in models] == [
        (1, "ok", "scripted-1", "scripted"),
        (1, "ok", "scripted-1", "scripted"),
    ]
    assert token_totals(models) == reported_usage(final_messages(rt, view))
    for row in models:
        assert not row.usage_missing and row.price_source == "override"
        usage = TokenUsage(row.input_tokens, row.output_tokens, row.cached_tokens)
        assert row.cost_usd == SCRIPTED_RATES.cost(usage)
        assert (row.ttft_ms is not None) is streamed(rt)
        assert row.latency_ms > 0 and (row.graph_version, row.user_id) == (1, "alice")
    [tool] = [r for r in rows(rt, run_id=view.run_id) if r.kind == "tool"]
    assert (tool.tool, tool.outcome, tool.model, tool.cost_usd) == (
        "lookup_order",
        "ok",
        None,
        None,
    )
    assert tool.latency_ms >= 0 and tool.node_id == "agent"
    # the run console sees the same cost on each model step
    shown = [Decimal(c["cost_usd"]) for c in node_costs(rt, view.run_id)]
    assert shown == [r.cost_usd for r in models]


def test_a_failing_tool_is_recorded_with_its_outcome(rt: Runtime, alice: Actor) -> None:
    script = [
        {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "not an id"}}]},
        {"text": "That order id is wrong."},
    ]
    view = run(rt, alice, llm_doc(script=script, tools=[LOOKUP_TOOL]))
    assert view.status == "succeeded", view.error
    [tool] = [r for r in rows(rt, run_id=view.run_id) if r.kind == "tool"]
    assert (tool.outcome, tool.error_kind) == ("error", "failed")


def test_a_model_without_a_price_is_recorded_with_unknown_cost(rt: Runtime, alice: Actor) -> None:
    view = run(rt, alice, llm_doc())
    [row] = model_rows(rt, view.run_id)
    assert (row.price_source, row.cost_usd, row.usage_missing) == ("unknown", None, False)
    assert row.input_tokens > 0 and row.output_tokens > 0  # tokens are known all the same
    assert node_costs(rt, view.run_id)[0]["cost_usd"] is None


def test_sub_graph_calls_are_recorded_once_under_the_node_path(rt: Runtime, alice: Actor) -> None:
    price_scripted(rt, alice)
    child = llm_doc("Child", script=[{"text": "billing"}])
    child["nodes"][0]["id"] = "label_it"
    child["entry"] = "label_it"
    parent = {
        "schema_version": 1,
        "name": "Parent",
        "entry": "classify",
        "state": [
            {"name": "question", "type": "string", "input": True},
            {"name": "answer", "type": "string"},
        ],
        "nodes": [
            {
                "id": "classify",
                "type": "subgraph",
                "config": {
                    "graph": child,
                    "inputs": {"question": "question"},
                    "outputs": {"answer": "answer"},
                },
            },
            {"id": "done", "type": "output", "config": {"fields": ["answer"]}},
        ],
        "edges": [{"source": "classify", "target": "done"}],
    }
    view = run(rt, alice, parent, "Why was I charged twice?")
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": "billing"}
    [row] = rows(rt, run_id=view.run_id)
    assert (row.node_id, row.kind, row.outcome) == ("classify/label_it", "model", "ok")
    # the child's only call reported exactly this (same prompt through the scripted model)
    from components.providers.scripted import ScriptedChatModel, ScriptStep

    answer = ScriptedChatModel(script=[ScriptStep(text="billing")]).invoke(
        "Why was I charged twice?"
    )
    assert answer.usage_metadata is not None
    expected = (answer.usage_metadata["input_tokens"], answer.usage_metadata["output_tokens"])
    assert (row.input_tokens, row.output_tokens) == expected
    assert node_costs(rt, view.run_id) == []  # the parent's step adds nothing: no double count


# --- the OpenAI-compatible provider against the loopback server -------------------------


def test_loopback_usage_is_recorded_as_reported_with_cached_tokens(
    rt: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    price_loopback(rt, alice)
    server.enqueue(
        Answer(text="It ships today.", prompt_tokens=57, completion_tokens=5, cached_tokens=7)
    )
    view = run(rt, alice, loopback_doc(server))
    assert view.status == "succeeded", view.error
    [row] = model_rows(rt, view.run_id)
    assert (row.input_tokens, row.output_tokens, row.cached_tokens) == (57, 5, 7)
    assert (row.model, row.provider, row.price_source) == ("gpt-loopback", "openai", "override")
    assert row.cost_usd == LOOPBACK_RATES.cost(TokenUsage(57, 5, 7)) == Decimal("0.000147")
    assert (row.ttft_ms is not None) is streamed(rt)
    if row.ttft_ms is not None:
        assert 0 < row.ttft_ms <= row.latency_ms


def test_every_retry_is_recorded_and_only_reported_usage_is_counted(
    rt: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    price_loopback(rt, alice)
    server.enqueue(
        HttpError(429, retry_after="0.05", error_type="rate_limit_exceeded"),
        Answer(text="Second time lucky.", prompt_tokens=9, completion_tokens=4),
    )
    view = run(rt, alice, loopback_doc(server))
    assert view.status == "succeeded", view.error
    models = model_rows(rt, view.run_id)
    assert [(r.attempt, r.outcome, r.error_kind) for r in models] == [
        (1, "retry", "rate_limited"),
        (2, "ok", None),
    ]
    retry, ok = models
    assert (retry.usage_missing, retry.input_tokens, retry.cost_usd) == (True, None, None)
    assert token_totals(models) == (9, 4) and cost_total(models) == ok.cost_usd
    assert len(server.requests) == 2


def test_fallback_after_a_failed_model_costs_every_attempt(
    rt: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    price_loopback(rt, alice)
    price_loopback(rt, alice, model="gpt-cheap")
    cheap = {"model": "gpt-cheap", "base_url": server.base_url, "max_retries": 0}
    doc = loopback_doc(server, fallback_models=[{"provider": "openai", "provider_config": cheap}])
    server.enqueue(
        HttpError(503),
        HttpError(500),
        Answer(text="From the fallback.", prompt_tokens=21, completion_tokens=6),
    )
    view = run(rt, alice, doc)
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": "From the fallback."}
    models = model_rows(rt, view.run_id)
    assert [(r.attempt, r.model, r.outcome, r.error_kind) for r in models] == [
        (1, "gpt-loopback", "retry", "server_error"),
        (2, "gpt-loopback", "fallback", "server_error"),
        (3, "gpt-cheap", "ok", None),
    ]
    assert token_totals(models) == (21, 6)
    assert [r.body["model"] for r in server.requests] == ["gpt-loopback"] * 2 + ["gpt-cheap"]


def test_agent_loop_on_the_loopback_server_totals_equal_the_server_usage(
    rt: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    price_loopback(rt, alice)
    server.enqueue(
        Answer(
            tool_calls=(ToolCall("lookup_order", {"order_id": "B-2"}),),
            prompt_tokens=80,
            completion_tokens=12,
        ),
        Answer(text="B-2 was delivered.", prompt_tokens=140, completion_tokens=8, cached_tokens=64),
    )
    view = run(rt, alice, loopback_doc(server, tools=[LOOKUP_TOOL]))
    assert view.status == "succeeded", view.error
    models = model_rows(rt, view.run_id)
    assert token_totals(models) == (220, 20)
    assert sum(r.cached_tokens for r in models) == 64
    expected = LOOPBACK_RATES.cost(TokenUsage(80, 12)) + LOOPBACK_RATES.cost(TokenUsage(140, 8, 64))
    assert cost_total(models) == expected
    assert [r.kind for r in rows(rt, run_id=view.run_id)] == ["model", "tool", "model"]


def test_missing_usage_is_recorded_as_missing_never_as_zero(
    rt: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    price_loopback(rt, alice)
    server.enqueue(Answer(text="No usage from me.", report_usage=False))
    view = run(rt, alice, loopback_doc(server))
    assert view.status == "succeeded", view.error
    [row] = model_rows(rt, view.run_id)
    assert row.usage_missing is True
    assert (row.input_tokens, row.output_tokens, row.cached_tokens, row.cost_usd) == (
        None,
        None,
        None,
        None,
    )
    assert row.price_source == "override"  # the price is known; the usage is not
    [shown] = node_costs(rt, view.run_id)
    assert shown["cost_usd"] is None
