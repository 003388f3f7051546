"""Helpers for the accounting, budget and cache tests: metered runtimes, documents, rows."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage
from sqlalchemy import select

from analytics.budgets import Budgets
from analytics.meter import SqlMeter, open_meter
from analytics.tables import UsageEvent
from components.base import HttpPolicy
from graphs.headless import Runtime, open_runtime, run_document
from graphs.identity import Actor, LocalAuthorizer
from graphs.runs import RunView
from tests.conftest import question_answer_doc

SCRIPTED_PRICE = {"input_per_mtok": "1.5", "output_per_mtok": "6", "cached_per_mtok": "0.5"}


@contextmanager
def metered_runtime(
    path: Path, *, receiver_host: str | None = None, **options: Any
) -> Iterator[Runtime]:
    """A headless runtime whose calls go through the analytics meter (real SQLite file)."""
    hosts = frozenset({receiver_host}) if receiver_host else frozenset()
    policy = HttpPolicy(allow_hosts=hosts, timeout_s=5)
    options.setdefault("lease_ttl_s", 5)
    with open_runtime(path, http=policy, meter=open_meter, **options) as rt:
        yield rt


def meter_of(rt: Runtime) -> SqlMeter:
    meter = rt.manager.executor.meter
    assert isinstance(meter, SqlMeter)
    return meter


def budgets_of(rt: Runtime) -> Budgets:
    return Budgets(rt.engine, LocalAuthorizer(), on_change=meter_of(rt).invalidate)


def price_scripted(rt: Runtime, actor: Actor, model: str = "scripted-1", **rates: str) -> None:
    budgets_of(rt).set_price(actor, model=model, provider="scripted", **(rates or SCRIPTED_PRICE))


def rows(rt: Runtime, *, run_id: str | None = None, workspace_id: str | None = None) -> list[Any]:
    query = select(UsageEvent).order_by(UsageEvent.event_id)
    if run_id is not None:
        query = query.where(UsageEvent.run_id == run_id)
    if workspace_id is not None:
        query = query.where(UsageEvent.workspace_id == workspace_id)
    with rt.engine.connect() as conn:
        return list(conn.execute(query).all())


def model_rows(rt: Runtime, run_id: str) -> list[Any]:
    return [r for r in rows(rt, run_id=run_id) if r.kind == "model"]


def token_totals(records: list[Any]) -> tuple[int, int]:
    return (
        sum(r.input_tokens or 0 for r in records),
        sum(r.output_tokens or 0 for r in records),
    )


def cost_total(records: list[Any]) -> Decimal:
    return sum((r.cost_usd for r in records if r.cost_usd is not None), Decimal(0))


def final_messages(rt: Runtime, run: RunView) -> list[Any]:
    compiled = rt.manager.executor.compiled(run.version_id)
    state = compiled.graph.get_state({"configurable": {"thread_id": f"run:{run.run_id}"}})
    return list(state.values.get("messages") or [])


def reported_usage(messages: list[Any]) -> tuple[int, int]:
    """Tokens the provider reported on the answers that reached the run's state."""
    answers = [m for m in messages if isinstance(m, AIMessage) and m.usage_metadata]
    return (
        sum(m.usage_metadata["input_tokens"] for m in answers if m.usage_metadata),
        sum(m.usage_metadata["output_tokens"] for m in answers if m.usage_metadata),
    )


def llm_doc(
    name: str = "Metered",
    *,
    script: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
    policies: dict[str, Any] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """One scripted llm node answering `question` into `answer`."""
    node: dict[str, Any] = {
        "prompt": "{{ question }}",
        "output_field": "answer",
        "provider_config": {"script": script or [{"text": "A short answer."}]},
        **config,
    }
    doc = question_answer_doc(name, node, tools)
    if policies:
        doc["policies"] = policies
    return copy.deepcopy(doc)


LOOKUP_TOOL = {"name": "lookup_order", "type": "function", "config": {"function": "lookup_order"}}


def run(
    rt: Runtime, actor: Actor, doc: dict[str, Any], question: str = "Where is my order?"
) -> RunView:
    return run_document(rt, doc, {"question": question}, actor=actor, timeout_s=60)
