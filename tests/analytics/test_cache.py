"""The response cache: an exact hit returns the same answer, costs nothing new and records
what it saved; it is never shared across workspaces; side-effect tools keep it off unless
the node allows it; entries expire and each workspace has its own size limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from analytics.meter import SqlMeter, open_meter
from analytics.tables import CacheEntry
from components.base import CallSite, ModelAttempt, ModelRequest, TokenUsage
from graphs.db import make_engine
from graphs.headless import Runtime
from graphs.identity import Actor
from tests.analytics.helpers import (
    LOOKUP_TOOL,
    budgets_of,
    llm_doc,
    metered_runtime,
    model_rows,
    price_scripted,
    rows,
    run,
)

CACHED = {"cache_ttl_s": 3600}
EMAIL_TOOL = {
    "name": "email_customer",
    "type": "email",
    "tier": "free",
    "config": {"allowed_domains": ["example.com"]},
}


@pytest.fixture
def rt(tmp_path: Path, alice: Actor, mallory: Actor) -> Iterator[Runtime]:
    with metered_runtime(tmp_path / "studio.db") as runtime:
        price_scripted(runtime, alice)
        price_scripted(runtime, mallory)
        yield runtime


def entries(rt: Runtime) -> list[Any]:
    with rt.engine.connect() as conn:
        return list(conn.execute(select(CacheEntry.workspace_id, CacheEntry.hits)).all())


def test_a_hit_returns_the_same_answer_with_zero_new_spend_and_the_saving(
    rt: Runtime, alice: Actor
) -> None:
    budget = budgets_of(rt).create(alice, scope="workspace", amount_usd=1)
    first = run(rt, alice, llm_doc(**CACHED))
    second = run(rt, alice, llm_doc(**CACHED))
    assert second.status == "succeeded" and second.output == first.output
    [paid] = model_rows(rt, first.run_id)
    [hit] = model_rows(rt, second.run_id)
    assert (hit.outcome, hit.cache_hit, hit.cost_usd, hit.price_source) == (
        "cache_hit",
        True,
        Decimal(0),
        "cache",
    )
    assert (hit.input_tokens, hit.output_tokens) == (0, 0)  # no tokens were used again
    assert hit.saved_usd == paid.cost_usd > 0
    assert budgets_of(rt).status(alice, budget.budget_id).spent_usd == paid.cost_usd
    assert entries(rt) == [("acme", 1)]


def test_another_workspace_never_hits_the_first_ones_entries(
    rt: Runtime, alice: Actor, mallory: Actor
) -> None:
    run(rt, alice, llm_doc(**CACHED))
    theirs = run(rt, mallory, llm_doc(**CACHED))
    assert [r.outcome for r in model_rows(rt, theirs.run_id)] == ["ok"]
    assert sorted(entries(rt)) == [("acme", 0), ("evil-corp", 0)]
    again = run(rt, mallory, llm_doc(**CACHED))  # their own entry, now
    [hit] = model_rows(rt, again.run_id)
    assert (hit.outcome, hit.workspace_id) == ("cache_hit", "evil-corp")
    assert sorted(entries(rt)) == [("acme", 0), ("evil-corp", 1)]


@pytest.mark.parametrize(
    "change",
    [
        {"question": "Another question?"},
        {"system_prompt": "Be brief."},
        {"provider_config": {"model": "scripted-2", "script": [{"text": "A short answer."}]}},
    ],
)
def test_any_difference_in_the_request_misses(
    rt: Runtime, alice: Actor, change: dict[str, Any]
) -> None:
    run(rt, alice, llm_doc(**CACHED))
    question = change.pop("question", "Where is my order?")
    view = run(rt, alice, llm_doc(**CACHED, **change), question)
    assert [r.outcome for r in model_rows(rt, view.run_id)] == ["ok"]


def test_a_cached_agent_loop_still_runs_its_tools(rt: Runtime, alice: Actor) -> None:
    script = [
        {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-3"}}]},
        {"text": "A-3 is delivered."},
    ]
    doc = llm_doc(script=script, tools=[LOOKUP_TOOL], **CACHED)
    first = run(rt, alice, doc)
    second = run(rt, alice, doc)
    assert second.output == first.output == {"answer": "A-3 is delivered."}
    assert [(r.kind, r.outcome) for r in rows(rt, run_id=second.run_id)] == [
        ("model", "cache_hit"),
        ("tool", "ok"),
        ("model", "cache_hit"),
    ]


def test_side_effect_tools_keep_the_cache_off_unless_the_node_allows_it(
    rt: Runtime, alice: Actor
) -> None:
    doc = llm_doc(tools=[EMAIL_TOOL], **CACHED)
    run(rt, alice, doc)
    second = run(rt, alice, doc)
    assert [r.outcome for r in model_rows(rt, second.run_id)] == ["ok"]
    assert entries(rt) == []
    allowed = llm_doc("Allowed", tools=[EMAIL_TOOL], cache_with_side_effects=True, **CACHED)
    run(rt, alice, allowed)
    third = run(rt, alice, allowed)
    assert [r.outcome for r in model_rows(rt, third.run_id)] == ["cache_hit"]


def test_without_a_ttl_nothing_is_cached(rt: Runtime, alice: Actor) -> None:
    run(rt, alice, llm_doc())
    view = run(rt, alice, llm_doc())
    assert [r.outcome for r in model_rows(rt, view.run_id)] == ["ok"]
    assert entries(rt) == []


# --- expiry and size limits, on the meter directly ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _store(meter: SqlMeter, key: str, ttl: float = 60, workspace: str = "acme") -> None:
    site = CallSite(workspace, "run-1", "graph-1", 1, "alice", "agent")
    request = ModelRequest("scripted", "m", TokenUsage(10, 10), cache_key=key, cache_ttl_s=ttl)
    permit = meter.admit(site, request, attempt=1)
    assert permit.verdict == "go"
    answer = {"type": "ai", "data": {"content": key * 50, "type": "ai"}}
    meter.settle(permit, [ModelAttempt(1, "ok", "m", TokenUsage(10, 10), 5.0)], answer)


def _hit(meter: SqlMeter, key: str, workspace: str = "acme") -> bool:
    site = CallSite(workspace, "run-2", "graph-1", 1, "alice", "agent")
    request = ModelRequest("scripted", "m", TokenUsage(10, 10), cache_key=key, cache_ttl_s=60)
    return meter.admit(site, request, attempt=1).verdict == "cached"


def test_entries_expire_after_their_ttl(tmp_path: Path) -> None:
    clock = Clock()
    meter = open_meter(make_engine(f"sqlite:///{tmp_path / 'c.db'}"), clock=clock)
    _store(meter, "k1", ttl=60)
    clock.now += timedelta(seconds=59)
    assert _hit(meter, "k1")
    clock.now += timedelta(seconds=2)
    assert not _hit(meter, "k1")


def test_each_workspace_keeps_to_its_own_size_limit(tmp_path: Path) -> None:
    clock = Clock()
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    meter = open_meter(engine, clock=clock, cache_max_entries=2)
    _store(meter, "theirs", workspace="other")
    for key in ("a", "b", "c"):
        clock.now += timedelta(seconds=1)
        _store(meter, key)
    assert not _hit(meter, "a")  # the oldest went first
    assert _hit(meter, "b") and _hit(meter, "c")
    assert _hit(meter, "theirs", workspace="other")  # another workspace lost nothing
    assert not _hit(meter, "b", workspace="other")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(CacheEntry)) == 3
