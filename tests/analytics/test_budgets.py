"""Budgets before every model call: stop as `budget_exceeded`, fall back to a cheaper model,
or pause for an admin to approve the overspend (in the approval inbox); settled from what
the call actually cost; per workspace, user, graph and run; periods; service functions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from analytics.budgets import Budgets
from analytics.meter import open_meter
from components.errors import Forbidden, NotFound, UserError
from graphs.headless import Runtime, open_runtime
from graphs.identity import Actor, LocalAuthorizer
from tests.analytics.helpers import (
    LOOKUP_TOOL,
    budgets_of,
    cost_total,
    llm_doc,
    meter_of,
    metered_runtime,
    model_rows,
    price_scripted,
    rows,
    run,
)
from tests.loopback.openai_server import Answer, OpenAILoopback, openai_server

# scripted-1 at $1.5 / $6 per million tokens; with expected_output_tokens=100 a small call
# is estimated at about $0.0006 and costs about $0.00005 (a short answer).
SMALL = {"expected_output_tokens": 100}


@pytest.fixture
def rt(tmp_path: Path, alice: Actor) -> Iterator[Runtime]:
    with metered_runtime(tmp_path / "studio.db") as runtime:
        price_scripted(runtime, alice)
        yield runtime


def counter(rt: Runtime, actor: Actor, budget_id: str, subject: str | None = None) -> Any:
    return budgets_of(rt).status(actor, budget_id, subject)


def test_stop_ends_the_run_before_the_call_reaches_the_provider(rt: Runtime, alice: Actor) -> None:
    budget = budgets_of(rt).create(alice, scope="workspace", amount_usd="0.0001", period="day")
    with openai_server() as server:
        server.enqueue(Answer(text="never sent"))
        doc = llm_doc(
            provider="openai",
            provider_config={"model": "scripted-1", "base_url": server.base_url},
        )
        budgets_of(rt).set_price(alice, model="scripted-1", input_per_mtok=1, output_per_mtok=6)
        view = run(rt, alice, doc)
        assert server.requests == []  # checked BEFORE the call
    assert view.status == "budget_exceeded"
    assert view.error and "workspace budget of $0.0001 per day" in view.error
    [row] = model_rows(rt, view.run_id)
    assert (row.outcome, row.error_kind, row.input_tokens, row.cost_usd) == (
        "budget_stopped",
        "budget",
        0,
        Decimal(0),
    )
    status = counter(rt, alice, budget.budget_id)
    assert (status.spent_usd, status.reserved_usd) == (0, 0)


def test_run_budget_lets_the_first_call_through_and_stops_the_loop_at_the_next(
    rt: Runtime, alice: Actor
) -> None:
    budget = budgets_of(rt).create(alice, scope="run", amount_usd="0.001", period="total")
    script = [
        {"text": "Looking.", "tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1"}}]},
        {"text": "Done."},
    ]
    view = run(rt, alice, llm_doc(script=script, tools=[LOOKUP_TOOL], **SMALL))
    assert view.status == "budget_exceeded", view.error
    assert [(r.kind, r.outcome) for r in rows(rt, run_id=view.run_id)] == [
        ("model", "ok"),
        ("tool", "ok"),
        ("model", "budget_stopped"),
    ]
    status = counter(rt, alice, budget.budget_id, view.run_id)
    assert status.spent_usd == cost_total(model_rows(rt, view.run_id)) > 0
    assert status.reserved_usd == 0
    assert status.period_key == "total"
    # a run budget is per run: the next run starts from zero
    again = run(rt, alice, llm_doc("Other", **SMALL))
    assert again.status == "succeeded", again.error


def test_fallback_goes_to_the_cheaper_model_that_fits(rt: Runtime, alice: Actor) -> None:
    budgets_of(rt).set_price(alice, model="big-1", input_per_mtok=30, output_per_mtok=120)
    budgets_of(rt).create(alice, scope="graph", amount_usd="0.001", period="month")
    doc = llm_doc(
        provider_config={"model": "big-1", "script": [{"text": "expensive"}]},
        fallback_models=[
            {"provider_config": {"model": "scripted-1", "script": [{"text": "cheap"}]}}
        ],
        policies={"budget_action": "fallback"},
        **SMALL,
    )
    view = run(rt, alice, doc)
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": "cheap"}
    assert [(r.attempt, r.model, r.outcome) for r in model_rows(rt, view.run_id)] == [
        (1, "big-1", "fallback"),
        (2, "scripted-1", "ok"),
    ]


def test_fallback_without_a_model_that_fits_stops(rt: Runtime, alice: Actor) -> None:
    budgets_of(rt).create(alice, scope="user", scope_id="alice", amount_usd="0.00001")
    cheap = {"provider_config": {"model": "scripted-1"}}
    doc = llm_doc(fallback_models=[cheap], policies={"budget_action": "fallback"}, **SMALL)
    view = run(rt, alice, doc)
    assert view.status == "budget_exceeded"
    assert view.error and "no fallback model fits" in view.error
    outcomes = [r.outcome for r in model_rows(rt, view.run_id)]
    assert outcomes == ["fallback", "budget_stopped"]


def test_the_budgets_own_action_applies_when_the_graph_sets_none(rt: Runtime, alice: Actor) -> None:
    budgets_of(rt).set_price(alice, model="big-1", input_per_mtok=30, output_per_mtok=120)
    budgets_of(rt).create(alice, scope="workspace", amount_usd="0.001", action="fallback")
    doc = llm_doc(
        provider_config={"model": "big-1"},
        fallback_models=[{"provider_config": {"script": [{"text": "cheap"}]}}],
        **SMALL,
    )
    assert run(rt, alice, doc).output == {"answer": "cheap"}


def test_approve_pauses_until_an_admin_allows_the_overspend(
    rt: Runtime, alice: Actor, bob: Actor
) -> None:
    budget = budgets_of(rt).create(alice, scope="workspace", amount_usd="0.0001")
    doc = llm_doc(policies={"budget_action": "approve"}, **SMALL)
    view = run(rt, alice, doc)
    assert view.status == "waiting_approval"
    m = rt.manager
    [approval] = m.approvals.list(alice, run_id=view.run_id)
    assert (approval.kind, approval.action, approval.tier) == (
        "budget",
        "budget_overspend",
        "admin",
    )
    assert approval.args["model"] == "scripted-1"
    assert "workspace budget" in approval.description
    assert approval.allowed == ["approve", "reject"]
    with pytest.raises(Forbidden, match="someone other than the run's starter"):
        m.decide(alice, approval.approval_id, "approve")
    m.decide(bob, approval.approval_id, "approve")
    done = m.wait(alice, view.run_id, timeout_s=30)
    assert done.status == "succeeded", done.error
    assert [r.outcome for r in model_rows(rt, view.run_id)] == ["budget_paused", "ok"]
    status = counter(rt, alice, budget.budget_id)  # the approved call is charged as it cost
    assert status.spent_usd == cost_total(model_rows(rt, view.run_id)) > 0
    assert status.reserved_usd == 0


def test_a_refused_overspend_ends_the_run_budget_exceeded(
    rt: Runtime, alice: Actor, bob: Actor
) -> None:
    budgets_of(rt).create(alice, scope="workspace", amount_usd="0.0001", action="approve")
    view = run(rt, alice, llm_doc(**SMALL))
    [approval] = rt.manager.approvals.list(alice, run_id=view.run_id)
    rt.manager.decide(bob, approval.approval_id, "reject", feedback="not this month")
    done = rt.manager.wait(alice, view.run_id, timeout_s=30)
    assert done.status == "budget_exceeded"
    assert done.error and "not this month" in done.error and "'bob'" in done.error
    assert [r.outcome for r in model_rows(rt, view.run_id)] == ["budget_paused", "budget_stopped"]


def test_missing_usage_is_charged_at_the_estimate_but_recorded_as_missing(
    rt: Runtime, alice: Actor
) -> None:
    budgets_of(rt).set_price(
        alice, model="m", provider="openai", input_per_mtok=1, output_per_mtok=6
    )
    budget = budgets_of(rt).create(alice, scope="workspace", amount_usd="1")
    server: OpenAILoopback
    with openai_server() as server:
        server.enqueue(Answer(text="no usage", report_usage=False))
        config = {"model": "m", "base_url": server.base_url}
        view = run(rt, alice, llm_doc(provider="openai", provider_config=config, **SMALL))
    assert view.status == "succeeded", view.error
    [row] = model_rows(rt, view.run_id)
    assert row.usage_missing and row.cost_usd is None
    status = counter(rt, alice, budget.budget_id)
    assert status.spent_usd > 0  # not zero: the provider answered, so it billed something


def test_a_budget_of_another_workspace_never_applies(
    rt: Runtime, alice: Actor, mallory: Actor
) -> None:
    budgets_of(rt).create(mallory, scope="workspace", amount_usd="0")
    assert run(rt, alice, llm_doc(**SMALL)).status == "succeeded"


def test_day_budgets_start_from_zero_the_next_day(tmp_path: Path, alice: Actor) -> None:
    now = [datetime(2026, 3, 1, 23, 0, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    with open_runtime(tmp_path / "s.db", meter=lambda e: open_meter(e, clock=clock)) as rt:
        price_scripted(rt, alice)
        service = Budgets(rt.engine, LocalAuthorizer(), clock=clock)
        service.create(alice, scope="workspace", amount_usd="0.001", period="day")
        meter_of(rt).invalidate()
        long = [{"text": "word " * 80}]  # 100 output tokens, as estimated: about $0.0006
        assert run(rt, alice, llm_doc(script=long, **SMALL)).status == "succeeded"
        assert run(rt, alice, llm_doc(script=long, **SMALL)).status == "budget_exceeded"
        now[0] += timedelta(hours=2)  # March 2nd
        assert run(rt, alice, llm_doc(script=long, **SMALL)).status == "succeeded"


# --- the guard underneath ----------------------------------------------------------------


def test_reservations_of_calls_that_never_settled_expire(tmp_path: Path, alice: Actor) -> None:
    from analytics.guard import BudgetGuard, BudgetRule
    from components.base import CallSite
    from graphs.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    open_meter(engine)
    budget = Budgets(engine, LocalAuthorizer()).create(alice, scope="workspace", amount_usd="1")
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    guard = BudgetGuard(engine, lambda: now[0], reservation_ttl_s=60)
    rule = BudgetRule(budget.budget_id, "workspace", "*", Decimal(1), "month", "stop")
    [slot] = guard.slots([rule], CallSite("acme", "r1", "g1", 1, "alice", "n"))
    assert guard.reserve([slot], "p1", 600_000_000, force=False) is None
    assert guard.reserve([slot], "p2", 600_000_000, force=False) == slot  # 1.2 > 1
    now[0] += timedelta(minutes=2)  # the first caller died mid-call
    assert guard.release_expired() == 1
    assert guard.reserve([slot], "p3", 600_000_000, force=False) is None


# --- service functions ------------------------------------------------------------------


class DenyAll:
    def require(self, actor: Any, action: str) -> None:
        raise Forbidden(f"no {action}")


def test_service_scopes_by_workspace_and_checks_permissions(
    rt: Runtime, alice: Actor, mallory: Actor
) -> None:
    service = budgets_of(rt)
    budget = service.create(alice, scope="graph", scope_id="*", amount_usd=5, period="week")
    assert [b.budget_id for b in service.list_budgets(alice)] == [budget.budget_id]
    assert service.list_budgets(mallory) == []
    for call in (
        lambda: service.update(mallory, budget.budget_id, amount_usd=100),
        lambda: service.delete(mallory, budget.budget_id),
        lambda: service.status(mallory, budget.budget_id),
    ):
        with pytest.raises(NotFound):
            call()
    denied = Budgets(rt.engine, DenyAll())
    with pytest.raises(Forbidden, match="budget:manage"):
        denied.create(alice, scope="workspace", amount_usd=1)
    with pytest.raises(Forbidden, match="budget:manage"):
        denied.set_price(alice, model="m", input_per_mtok=1, output_per_mtok=1)
    with pytest.raises(Forbidden, match="analytics:read"):
        denied.list_budgets(alice)
    assert service.update(alice, budget.budget_id, amount_usd="7.5").amount_usd == Decimal("7.5")
    service.delete(alice, budget.budget_id)
    assert service.list_budgets(alice) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"scope": "team"}, "scope"),
        ({"period": "hour"}, "period"),
        ({"action": "ignore"}, "action"),
        ({"amount_usd": -1}, "between 0"),
        ({"amount_usd": "lots"}, "number of dollars"),
        ({"amount_usd": float("nan")}, "between 0"),
        ({"scope": "user", "scope_id": ""}, "scope_id"),
    ],
)
def test_bad_budgets_are_refused_with_a_message(
    rt: Runtime, alice: Actor, change: dict[str, Any], problem: str
) -> None:
    values: dict[str, Any] = {"scope": "workspace", "amount_usd": 1, **change}
    with pytest.raises(UserError, match=problem):
        budgets_of(rt).create(alice, **values)
    assert budgets_of(rt).list_budgets(alice) == []


def test_price_overrides_replace_and_delete(rt: Runtime, alice: Actor, mallory: Actor) -> None:
    service = budgets_of(rt)
    service.set_price(alice, model="llama3.1", input_per_mtok="0.1", output_per_mtok="0.2")
    changed = service.set_price(alice, model="llama3.1", input_per_mtok=1, output_per_mtok=2)
    assert changed.input_per_mtok == 1
    assert [(p.model, p.provider) for p in service.list_prices(alice)] == [
        ("llama3.1", "*"),
        ("scripted-1", "scripted"),
    ]
    assert service.list_prices(mallory) == []
    with pytest.raises(NotFound):
        service.delete_price(mallory, model="llama3.1")
    service.delete_price(alice, model="llama3.1")
    assert len(service.list_prices(alice)) == 1


def test_a_budget_stops_a_call_inside_a_sub_graph_and_the_whole_run(
    rt: Runtime, alice: Actor
) -> None:
    budgets_of(rt).create(alice, scope="workspace", amount_usd="0.00001")
    child = llm_doc("Child", **SMALL)
    parent = {
        "schema_version": 1,
        "name": "Parent",
        "entry": "inner",
        "state": [{"name": "question", "type": "string", "input": True}],
        "nodes": [
            {
                "id": "inner",
                "type": "subgraph",
                "config": {"graph": child, "inputs": {"question": "question"}},
            }
        ],
    }
    view = run(rt, alice, parent)
    assert view.status == "budget_exceeded"
    assert view.error and "node 'agent'" in view.error
    [row] = rows(rt, run_id=view.run_id)
    assert (row.node_id, row.outcome) == ("inner/agent", "budget_stopped")


def test_a_failed_call_is_recorded_and_charged_nothing(rt: Runtime, alice: Actor) -> None:
    budget = budgets_of(rt).create(alice, scope="workspace", amount_usd="1")
    view = run(rt, alice, llm_doc(script=[{"fail": "error"}], **SMALL))
    assert view.status == "failed"
    [row] = model_rows(rt, view.run_id)
    assert (row.outcome, row.error_kind, row.usage_missing, row.cost_usd) == (
        "error",
        "model_error",
        True,
        None,
    )
    status = counter(rt, alice, budget.budget_id)
    assert (status.spent_usd, status.reserved_usd) == (0, 0)
